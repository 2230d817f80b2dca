/**
 * Summaries of older turns by the configured LLM (never the scripted agent, which cannot summarize),
 * run by the session between turns so the hot path never waits on them.
 */
import type { ChatMessage, Llm } from '../engines/types.js';
import { summaryRequestMessages, type ConversationSummarizer } from './context-budget.js';

export class LlmSummarizer implements ConversationSummarizer {
  constructor(
    private readonly llm: Llm,
    private readonly timeoutMs = 10_000,
  ) {}

  async summarize(messages: readonly ChatMessage[], signal: AbortSignal, previousSummary?: string): Promise<string> {
    const combined = AbortSignal.any([signal, AbortSignal.timeout(this.timeoutMs)]);
    let text = '';
    for await (const event of this.llm.generate({ callId: 'summary', messages: summaryRequestMessages(messages, previousSummary), tools: [], signal: combined })) {
      if (event.type === 'text') text += event.delta;
    }
    if (combined.aborted) throw new Error('summary timed out or was cancelled');
    return text.trim();
  }
}
