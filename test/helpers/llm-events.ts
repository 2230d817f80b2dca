/** Helpers for reading LLM event streams in tests. */
import type { LlmEvent } from '../../src/engines/types.js';

export async function collect(events: AsyncIterable<LlmEvent>): Promise<LlmEvent[]> {
  const out: LlmEvent[] = [];
  for await (const event of events) out.push(event);
  return out;
}

/** The spoken text of a stream's events. */
export function text(events: LlmEvent[]): string {
  return events.map((e) => (e.type === 'text' ? e.delta : '')).join('');
}
