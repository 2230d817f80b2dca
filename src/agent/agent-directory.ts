/**
 * The agents of this server, by called number. `AGENT_SCRIPT` is either one script file (every
 * number gets it) or a folder of scripts named by the number they answer in E.164
 * (`+15551234567.json`) plus `default.json` for any other number. Each number gets its own scripted
 * agent, which also answers for it when the configured LLM fails or times out. A profile carries
 * the script's HTTP tools, for the LLM to call.
 */
import { readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { loadAgentScript, type AgentScript } from '../engines/local/agent-script.js';
import { ScriptedAgent } from '../engines/local/scripted-agent.js';
import type { Llm } from '../engines/types.js';
import type { AgentProfile } from './agent-profile.js';

export interface AgentEntry {
  script: AgentScript;
  profile: AgentProfile;
  scripted: ScriptedAgent;
}

const E164_FILE = /^\+[1-9]\d{6,14}\.json$/;

export class AgentDirectory {
  private constructor(
    private readonly byNumber: Map<string, AgentEntry>,
    readonly fallback: AgentEntry,
  ) {}

  /** Loads and validates every script; any bad file stops start-up with its name and the problem. */
  static load(path: string): AgentDirectory {
    if (!statSync(path).isDirectory()) return new AgentDirectory(new Map(), entryFor(loadAgentScript(path)));
    const files = readdirSync(path).filter((name) => name.endsWith('.json'));
    const stray = files.filter((name) => name !== 'default.json' && !E164_FILE.test(name));
    if (stray.length > 0) {
      throw new Error(`${path}: script files must be named by an E.164 number (+15551234567.json) or default.json; found ${stray.join(', ')}`);
    }
    if (!files.includes('default.json')) throw new Error(`${path}: no default.json for numbers without a script of their own`);
    const byNumber = new Map<string, AgentEntry>();
    for (const name of files) {
      if (name !== 'default.json') byNumber.set(basename(name, '.json'), entryFor(loadAgentScript(join(path, name))));
    }
    return new AgentDirectory(byNumber, entryFor(loadAgentScript(join(path, 'default.json'))));
  }

  /** The agent for a called number (as Twilio sends it: E.164), or the default one. */
  forNumber(calledNumber: string | undefined): AgentEntry {
    return (calledNumber === undefined ? undefined : this.byNumber.get(calledNumber.trim())) ?? this.fallback;
  }

  all(): AgentEntry[] {
    return [this.fallback, ...this.byNumber.values()];
  }

  get numbers(): string[] {
    return [...this.byNumber.keys()];
  }
}

function entryFor(script: AgentScript): AgentEntry {
  return {
    script,
    scripted: new ScriptedAgent(script),
    profile: {
      name: script.name,
      greeting: script.greeting,
      apology: script.apology,
      ...(script.goodbye === undefined ? {} : { goodbye: script.goodbye }),
      systemPrompt: script.systemPrompt ?? `You are the phone assistant for ${script.name}. Answer in one or two short spoken sentences.`,
      ...(script.voice === undefined ? {} : { voice: script.voice }),
      tools: script.tools ?? [],
    },
  };
}

/** The LLM a call to this agent talks to: the configured endpoint backed by the script, or the script. */
export function llmFor(entry: AgentEntry, remote: ((fallback: Llm) => Llm) | undefined): Llm {
  return remote === undefined ? entry.scripted : remote(entry.scripted);
}
