// Guards against a malformed agent script being accepted (or rejected with an error that does not say which file and field to fix).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AgentScriptError, loadAgentScript, parseAgentScript } from '../../src/engines/local/agent-script.js';

function validScript(): Record<string, unknown> {
  return {
    name: 'Test Shop',
    greeting: 'Hello, Test Shop.',
    fallback: 'Sorry, I did not get that.',
    apology: 'Sorry, I had trouble with that.',
    intents: [
      { name: 'hours', keywords: ['hours', 'open'], reply: 'We open at nine.' },
      { name: 'bye', keywords: ['bye'], reply: 'Goodbye!', action: { type: 'hang_up' } },
      { name: 'human', keywords: ['person'], reply: 'Connecting you.', action: { type: 'transfer', to: '+15555550123' } },
    ],
  };
}

function errorOf(fn: () => unknown): AgentScriptError {
  try {
    fn();
  } catch (err) {
    if (err instanceof AgentScriptError) return err;
    throw err;
  }
  throw new Error('expected an AgentScriptError, but nothing was thrown');
}

const dir = mkdtempSync(join(tmpdir(), 'agent-script-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('parseAgentScript', () => {
  it('accepts a valid script and keeps every field, including optional ones and actions', () => {
    const script = parseAgentScript({ ...validScript(), goodbye: 'Bye now.', systemPrompt: 'Be brief.', voice: 'amy' }, 'x.json');
    expect(script.name).toBe('Test Shop');
    expect(script.goodbye).toBe('Bye now.');
    expect(script.systemPrompt).toBe('Be brief.');
    expect(script.voice).toBe('amy');
    expect(script.intents.map((i) => i.action)).toEqual([
      undefined,
      { type: 'hang_up' },
      { type: 'transfer', to: '+15555550123' },
    ]);
  });

  it('names the file and the field path when an intent has no keywords', () => {
    const json = validScript();
    (json['intents'] as Record<string, unknown>[])[2]!['keywords'] = [];
    const err = errorOf(() => parseAgentScript(json, 'examples/x.json'));
    expect(err.message).toBe('examples/x.json: intents[2].keywords must be a non-empty array of strings');
  });

  it('rejects keywords that are not all strings', () => {
    const json = validScript();
    (json['intents'] as Record<string, unknown>[])[0]!['keywords'] = ['hours', 7];
    expect(errorOf(() => parseAgentScript(json, 's.json')).problems).toEqual([
      'intents[0].keywords must be a non-empty array of strings',
    ]);
  });

  it('rejects a keyword made only of punctuation, since it could never match', () => {
    const json = validScript();
    (json['intents'] as Record<string, unknown>[])[1]!['keywords'] = ['bye', '?!'];
    expect(errorOf(() => parseAgentScript(json, 's.json')).problems).toEqual(['intents[1].keywords[1] must contain at least one word (got "?!")']);
  });

  it('reports every missing required top-level string at once', () => {
    const { greeting: _g, apology: _a, ...rest } = validScript();
    const err = errorOf(() => parseAgentScript({ ...rest, fallback: '  ' }, 's.json'));
    expect(err.problems).toEqual(['greeting must be a non-empty string', 'fallback must be a non-empty string', 'apology must be a non-empty string']);
    expect(err.message.split('\n')).toHaveLength(3);
    expect(err.message.split('\n').every((line) => line.startsWith('s.json: '))).toBe(true);
  });

  it('rejects a transfer whose target is not an E.164 number or SIP URI', () => {
    const json = validScript();
    (json['intents'] as Record<string, unknown>[])[2]!['action'] = { type: 'transfer', to: '555-0123' };
    expect(errorOf(() => parseAgentScript(json, 's.json')).problems[0]).toMatch(/^intents\[2\]\.action\.to must be an E\.164/);
  });

  it('accepts a SIP URI as a transfer target', () => {
    const json = validScript();
    (json['intents'] as Record<string, unknown>[])[2]!['action'] = { type: 'transfer', to: 'sip:desk@pbx.example.com' };
    expect(parseAgentScript(json, 's.json').intents[2]!.action).toEqual({ type: 'transfer', to: 'sip:desk@pbx.example.com' });
  });

  it('rejects an unknown action type', () => {
    const json = validScript();
    (json['intents'] as Record<string, unknown>[])[1]!['action'] = { type: 'hangup' };
    expect(errorOf(() => parseAgentScript(json, 's.json')).problems).toEqual(['intents[1].action.type must be "hang_up" or "transfer" (got "hangup")']);
  });

  it('rejects misspelled fields instead of silently ignoring them', () => {
    const json: Record<string, unknown> = { ...validScript(), greting: 'Hi' };
    (json['intents'] as Record<string, unknown>[])[0]!['keyword'] = ['x'];
    const problems = errorOf(() => parseAgentScript(json, 's.json')).problems;
    expect(problems.some((p) => p.startsWith('greting is not a known field'))).toBe(true);
    expect(problems.some((p) => p.startsWith('intents[0].keyword is not a known field'))).toBe(true);
  });

  it('rejects two intents with the same name', () => {
    const json = validScript();
    (json['intents'] as Record<string, unknown>[])[2]!['name'] = 'Hours';
    expect(errorOf(() => parseAgentScript(json, 's.json')).problems).toEqual(['intents[2].name "Hours" repeats intents[0].name']);
  });

  it('rejects a script that is not an object, or whose intents are not an array', () => {
    expect(errorOf(() => parseAgentScript([], 's.json')).message).toBe('s.json: the script must be a JSON object');
    expect(errorOf(() => parseAgentScript({ ...validScript(), intents: {} }, 's.json')).problems).toEqual(['intents must be an array']);
  });
});

describe('loadAgentScript', () => {
  it('loads the example script shipped with the repository', () => {
    const script = loadAgentScript('examples/agent-script.json');
    expect(script.intents.length).toBeGreaterThan(3);
    expect(script.intents.some((i) => i.action?.type === 'hang_up')).toBe(true);
    expect(script.intents.some((i) => i.action?.type === 'transfer')).toBe(true);
  });

  it('names the file when it is not valid JSON', () => {
    const path = join(dir, 'broken.json');
    writeFileSync(path, '{ "name": "x", ');
    expect(errorOf(() => loadAgentScript(path)).message).toMatch(new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: invalid JSON`));
  });

  it('names the file when it does not exist', () => {
    const path = join(dir, 'missing.json');
    expect(errorOf(() => loadAgentScript(path)).message.startsWith(`${path}: cannot read the file`)).toBe(true);
  });

  it('names the file in field errors found after loading', () => {
    const path = join(dir, 'bad-field.json');
    writeFileSync(path, JSON.stringify({ ...validScript(), name: 42 }));
    expect(errorOf(() => loadAgentScript(path)).message).toBe(`${path}: name must be a non-empty string`);
  });
});
