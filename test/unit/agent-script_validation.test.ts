// Guards against a malformed agent script being accepted (or rejected with an error that does not say which file and field to fix).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { AgentDirectory } from '../../src/agent/agent-directory.js';
import { fixedPrompts } from '../../src/agent/agent-profile.js';
import { BUILT_IN_TOOLS } from '../../src/agent/built-in-tools.js';
import {
  AgentScriptError,
  DEFAULT_TOOL_FILLER,
  loadAgentScript,
  parseAgentScript,
  RESERVED_TOOL_NAMES,
} from '../../src/engines/local/agent-script.js';

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

function validTool(): Record<string, unknown> {
  return {
    name: 'lookup_order',
    description: 'Look up the status of an order.',
    parameters: { type: 'object', properties: { order_number: { type: 'string' } }, required: ['order_number'] },
    url: 'https://api.example.com/orders/status',
  };
}

/** The problems reported for a script whose only tool is the valid one with `changes` applied (undefined deletes). */
function toolProblems(changes: Record<string, unknown>, env: NodeJS.ProcessEnv = {}): string[] {
  const tool = validTool();
  for (const [key, value] of Object.entries(changes)) {
    if (value === undefined) delete tool[key];
    else tool[key] = value;
  }
  return errorOf(() => parseAgentScript({ ...validScript(), tools: [tool] }, 's.json', env)).problems;
}

describe('parseAgentScript: HTTP tools', () => {
  it('accepts a script without tools, and one with tools, filling in every default', () => {
    expect(parseAgentScript(validScript(), 's.json').tools).toBeUndefined();
    const script = parseAgentScript({ ...validScript(), tools: [validTool()] }, 's.json', {});
    expect(script.tools).toEqual([
      {
        name: 'lookup_order',
        description: 'Look up the status of an order.',
        parameters: { type: 'object', properties: { order_number: { type: 'string' } }, required: ['order_number'] },
        url: 'https://api.example.com/orders/status',
        method: 'POST',
        timeoutMs: 3000,
        headers: {},
        filler: DEFAULT_TOOL_FILLER,
      },
    ]);
    expect(DEFAULT_TOOL_FILLER).toBe('One moment please.');
  });

  it('keeps the optional fields as declared', () => {
    const [tool] = parseAgentScript(
      {
        ...validScript(),
        tools: [{ ...validTool(), url: 'http://127.0.0.1:8788/x?a=1', method: 'GET', timeoutMs: 100, headers: { 'X-Api-Key': 'k' }, filler: 'Let me check.' }],
      },
      's.json',
      {},
    ).tools ?? [];
    expect(tool).toMatchObject({ url: 'http://127.0.0.1:8788/x?a=1', method: 'GET', timeoutMs: 100, headers: { 'X-Api-Key': 'k' }, filler: 'Let me check.' });
  });

  it('accepts a parameters schema without properties', () => {
    expect(parseAgentScript({ ...validScript(), tools: [{ ...validTool(), parameters: { type: 'object' } }] }, 's.json', {}).tools).toHaveLength(1);
  });

  it('reserves the built-in tool names', () => {
    expect([...RESERVED_TOOL_NAMES].sort()).toEqual(BUILT_IN_TOOLS.map((tool) => tool.name).sort());
    expect(toolProblems({ name: 'end_call' })).toEqual(['tools[0].name "end_call" is the name of a built-in tool (end_call, transfer_call)']);
    expect(toolProblems({ name: 'Transfer_Call' })).toEqual(['tools[0].name "Transfer_Call" is the name of a built-in tool (end_call, transfer_call)']);
  });

  it('rejects names an LLM API would not accept', () => {
    for (const name of ['lookup-order', '1lookup', '', 'a'.repeat(65), 7]) {
      expect(toolProblems({ name })).toEqual([
        `tools[0].name must be 1 to 64 letters, digits or underscores, not starting with a digit (got ${JSON.stringify(name)})`,
      ]);
    }
    const longest = `_${'a'.repeat(63)}`;
    expect(parseAgentScript({ ...validScript(), tools: [{ ...validTool(), name: longest }] }, 's.json', {}).tools?.[0]?.name).toBe(longest);
  });

  it('rejects two tools with the same name', () => {
    const err = errorOf(() => parseAgentScript({ ...validScript(), tools: [validTool(), { ...validTool(), name: 'Lookup_Order' }] }, 's.json', {}));
    expect(err.problems).toEqual(['tools[1].name "Lookup_Order" repeats tools[0].name']);
  });

  it('reports each bad field with its path', () => {
    expect(toolProblems({ description: ' ' })).toEqual(['tools[0].description must be a non-empty string']);
    expect(toolProblems({ description: undefined })).toEqual(['tools[0].description must be a non-empty string']);
    expect(toolProblems({ url: 'ftp://example.com/x' })).toEqual(['tools[0].url must be an absolute http:// or https:// URL (got "ftp://example.com/x")']);
    expect(toolProblems({ url: '/orders' })).toEqual(['tools[0].url must be an absolute http:// or https:// URL (got "/orders")']);
    expect(toolProblems({ url: undefined })).toEqual(['tools[0].url must be an absolute http:// or https:// URL (got undefined)']);
    expect(toolProblems({ method: 'get' })).toEqual(['tools[0].method must be "POST" or "GET" (got "get")']);
    expect(toolProblems({ method: 'PUT' })).toEqual(['tools[0].method must be "POST" or "GET" (got "PUT")']);
    expect(toolProblems({ timeoutMs: 99 })).toEqual(['tools[0].timeoutMs must be a whole number of milliseconds from 100 to 30000 (got 99)']);
    expect(toolProblems({ timeoutMs: 30_001 })).toEqual(['tools[0].timeoutMs must be a whole number of milliseconds from 100 to 30000 (got 30001)']);
    expect(toolProblems({ timeoutMs: '3000' })).toEqual(['tools[0].timeoutMs must be a whole number of milliseconds from 100 to 30000 (got "3000")']);
    expect(toolProblems({ timeoutMs: 250.5 })).toEqual(['tools[0].timeoutMs must be a whole number of milliseconds from 100 to 30000 (got 250.5)']);
    expect(toolProblems({ filler: '' })).toEqual(['tools[0].filler must be a non-empty string']);
    expect(toolProblems({ headers: ['X-Api-Key'] })).toEqual(['tools[0].headers must be an object mapping header names to string values']);
    expect(toolProblems({ headers: { 'X-Retries': 3 } })).toEqual(['tools[0].headers.X-Retries must be a string (got 3)']);
    expect(toolProblems({ headers: { 'Bad Header': 'x' } })).toEqual(['tools[0].headers.Bad Header: "Bad Header" is not a valid HTTP header name']);
    expect(toolProblems({ headers: { 'X-A': 'a\r\nX-B: b' } })).toEqual(['tools[0].headers.X-A must not contain line breaks']);
    expect(toolProblems({ timeout: 3000 })).toEqual([
      'tools[0].timeout is not a known field (allowed: name, description, parameters, url, method, timeoutMs, headers, filler)',
    ]);
  });

  it('reports every problem of a tool at once', () => {
    expect(toolProblems({ name: 'end_call', url: 'nope', method: 'PATCH' })).toEqual([
      'tools[0].name "end_call" is the name of a built-in tool (end_call, transfer_call)',
      'tools[0].url must be an absolute http:// or https:// URL (got "nope")',
      'tools[0].method must be "POST" or "GET" (got "PATCH")',
    ]);
  });

  it('checks the parameters schema', () => {
    expect(toolProblems({ parameters: undefined })).toEqual(['tools[0].parameters must be a JSON Schema object such as {"type": "object", "properties": {...}}']);
    expect(toolProblems({ parameters: { properties: {} } })).toEqual(['tools[0].parameters.type must be "object" (got undefined)']);
    expect(toolProblems({ parameters: { type: 'string' } })).toEqual(['tools[0].parameters.type must be "object" (got "string")']);
    expect(toolProblems({ parameters: { type: 'object', properties: ['order_number'] } })).toEqual([
      'tools[0].parameters.properties must be an object mapping each argument name to its schema',
    ]);
    expect(toolProblems({ parameters: { type: 'object', properties: { n: 'string' } } })).toEqual([
      'tools[0].parameters.properties.n must be a JSON Schema object such as {"type": "string"}',
    ]);
    expect(toolProblems({ parameters: { type: 'object', properties: { n: { type: 'str' } } } })).toEqual([
      'tools[0].parameters.properties.n.type must be one of string, number, integer, boolean, object, array, null (got "str")',
    ]);
    expect(toolProblems({ parameters: { type: 'object', properties: { n: { type: 'string' } }, required: 'n' } })).toEqual([
      'tools[0].parameters.required must be an array of property names',
    ]);
    expect(toolProblems({ parameters: { type: 'object', properties: { n: { type: 'string' } }, required: ['n', 'order'] } })).toEqual([
      'tools[0].parameters.required[1] names "order", which is not in tools[0].parameters.properties',
    ]);
    expect(toolProblems({ parameters: { type: 'object', required: ['order'] } })).toEqual([
      'tools[0].parameters.required[0] names "order", which is not in tools[0].parameters.properties',
    ]);
  });

  it('rejects tools that are not an array of objects', () => {
    expect(errorOf(() => parseAgentScript({ ...validScript(), tools: validTool() }, 's.json')).problems).toEqual(['tools must be an array']);
    expect(errorOf(() => parseAgentScript({ ...validScript(), tools: ['lookup_order'] }, 's.json')).problems).toEqual(['tools[0] must be an object']);
  });

  it('resolves ${NAME} in header values from the environment', () => {
    const [tool] =
      parseAgentScript(
        { ...validScript(), tools: [{ ...validTool(), headers: { Authorization: 'Bearer ${ORDER_TOKEN}', 'X-Plain': 'as is', 'X-Both': '${A}-${B}' } }] },
        's.json',
        { ORDER_TOKEN: 't0k3n', A: 'one', B: 'two' },
      ).tools ?? [];
    expect(tool?.headers).toEqual({ Authorization: 'Bearer t0k3n', 'X-Plain': 'as is', 'X-Both': 'one-two' });
  });

  it('names the missing environment variable, with the file and the header path', () => {
    const err = errorOf(() =>
      parseAgentScript({ ...validScript(), tools: [{ ...validTool(), headers: { 'X-Api-Key': '${ORDER_API_KEY}' } }] }, 'agents/shop.json', { OTHER: 'x' }),
    );
    expect(err.message).toBe('agents/shop.json: tools[0].headers.X-Api-Key uses ${ORDER_API_KEY}, but the environment variable ORDER_API_KEY is not set');
    expect(toolProblems({ headers: { 'X-Api-Key': '${EMPTY}' } }, { EMPTY: '' })).toEqual([
      'tools[0].headers.X-Api-Key uses ${EMPTY}, but the environment variable EMPTY is not set',
    ]);
  });

  describe('with process.env', () => {
    afterEach(() => vi.unstubAllEnvs());

    it('reads header variables from process.env by default', () => {
      vi.stubEnv('AGENT_SCRIPT_TEST_KEY', 'from-env');
      const [tool] = parseAgentScript({ ...validScript(), tools: [{ ...validTool(), headers: { 'X-Key': '${AGENT_SCRIPT_TEST_KEY}' } }] }, 's.json').tools ?? [];
      expect(tool?.headers).toEqual({ 'X-Key': 'from-env' });
    });
  });
});

describe('loadAgentScript', () => {
  it('loads the example script shipped with the repository', () => {
    const script = loadAgentScript('examples/agent-script.json');
    expect(script.intents.length).toBeGreaterThan(3);
    expect(script.intents.some((i) => i.action?.type === 'hang_up')).toBe(true);
    expect(script.intents.some((i) => i.action?.type === 'transfer')).toBe(true);
  });

  it('loads the example script with an HTTP tool once its API key variable is set, and names the variable when not', () => {
    const script = loadAgentScript('examples/order-status-agent.json', { ORDER_API_KEY: 'dev-key' });
    expect(script.tools?.map((tool) => [tool.name, tool.method, tool.headers])).toEqual([['lookup_order', 'GET', { 'X-Api-Key': 'dev-key' }]]);
    expect(() => loadAgentScript('examples/order-status-agent.json', {})).toThrow(
      'examples/order-status-agent.json: tools[0].headers.X-Api-Key uses ${ORDER_API_KEY}, but the environment variable ORDER_API_KEY is not set',
    );
  });

  it('gives the agent profile the tools, and pre-synthesizes their filler lines once each', () => {
    vi.stubEnv('ORDER_API_KEY', 'dev-key');
    try {
      const profile = AgentDirectory.load('examples/order-status-agent.json').fallback.profile;
      expect(profile.tools.map((tool) => tool.name)).toEqual(['lookup_order']);
      expect(fixedPrompts(profile)).toEqual([profile.greeting, profile.apology, profile.goodbye, 'Let me look that up for you.']);
      const twice = { ...profile, tools: [...profile.tools, { ...profile.tools[0]!, name: 'other' }] };
      expect(fixedPrompts(twice)).toEqual(fixedPrompts(profile));
    } finally {
      vi.unstubAllEnvs();
    }
    expect(AgentDirectory.load('examples/agent-script.json').fallback.profile.tools).toEqual([]);
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
