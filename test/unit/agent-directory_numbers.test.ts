// Guards against a call getting another number's agent, or a bad script folder starting a server that answers wrong.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AgentDirectory, llmFor } from '../../src/agent/agent-directory.js';

describe('agent directory', () => {
  it('serves every number from a single script file', () => {
    const agents = AgentDirectory.load('examples/agent-script.json');
    expect(agents.forNumber('+15551234567').profile.name).toBe('Bright Smile Dental');
    expect(agents.forNumber(undefined)).toBe(agents.fallback);
    expect(agents.numbers).toEqual([]);
  });

  it('picks the script named by the called number, and default.json for any other', () => {
    const agents = AgentDirectory.load('test/fixtures/agents');
    expect(agents.forNumber('+15550001111').profile.greeting).toBe('Second line, hello.');
    expect(agents.forNumber('+15559999999').profile.greeting).toBe('Hello, how can I help?');
    expect(agents.numbers).toEqual(['+15550001111']);
  });

  it('refuses a folder without default.json or with files not named by a number', () => {
    const dir = mkdtempSync(join(tmpdir(), 'agents-'));
    writeFileSync(join(dir, '+15550001111.json'), '{}');
    expect(() => AgentDirectory.load(dir)).toThrow(/no default.json/);
    writeFileSync(join(dir, 'sales.json'), '{}');
    expect(() => AgentDirectory.load(dir)).toThrow(/named by an E.164 number.*sales.json/);
  });

  it('names the bad file when a script in the folder is invalid', () => {
    const dir = mkdtempSync(join(tmpdir(), 'agents-'));
    writeFileSync(join(dir, 'default.json'), '{"name": 3}');
    expect(() => AgentDirectory.load(dir)).toThrow(/default.json/);
  });

  it("backs the configured LLM with the number's own scripted agent", () => {
    const agents = AgentDirectory.load('test/fixtures/agents');
    const entry = agents.forNumber('+15550001111');
    expect(llmFor(entry, undefined)).toBe(entry.scripted);
    let backing: unknown;
    llmFor(entry, (fallback) => ((backing = fallback), fallback));
    expect(backing).toBe(entry.scripted);
  });
});
