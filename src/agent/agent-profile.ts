import type { HttpToolSpec } from '../engines/local/agent-script.js';

/** What a call's agent says and how: the per-number profile the session is built with. */
export interface AgentProfile {
  name: string;
  greeting: string;
  /** Said when the reply pipeline fails mid-call. */
  apology: string;
  goodbye?: string;
  systemPrompt: string;
  voice?: string;
  /** The HTTP tools this agent's LLM may call (besides the built-in ones); empty when none. */
  tools: HttpToolSpec[];
}

/** The fixed lines worth pre-synthesizing for instant playback, each once. */
export function fixedPrompts(profile: AgentProfile): string[] {
  const lines = [profile.greeting, profile.apology, ...(profile.goodbye === undefined ? [] : [profile.goodbye])];
  for (const tool of profile.tools) if (!lines.includes(tool.filler)) lines.push(tool.filler);
  return lines;
}
