/** What a call's agent says and how: the per-number profile the session is built with. */
export interface AgentProfile {
  name: string;
  greeting: string;
  /** Said when the reply pipeline fails mid-call. */
  apology: string;
  goodbye?: string;
  systemPrompt: string;
  voice?: string;
}

/** The fixed lines worth pre-synthesizing for instant playback. */
export function fixedPrompts(profile: AgentProfile): string[] {
  return [profile.greeting, profile.apology, ...(profile.goodbye === undefined ? [] : [profile.goodbye])];
}
