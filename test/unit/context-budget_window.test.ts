import { describe, expect, it } from 'vitest';
import {
  EXTRACTIVE_SUMMARY_MARKER,
  MESSAGE_OVERHEAD_TOKENS,
  SUMMARY_NOTE_PREFIX,
  estimateMessagesTokens,
  estimateTokens,
  fitToBudget,
  summaryRequestMessages,
  type FitResult,
} from '../../src/agent/context-budget.js';
import type { ChatMessage } from '../../src/engines/types.js';

const SYSTEM: ChatMessage = { role: 'system', content: 'You are Ava, the phone agent of Acme Furniture. Be brief and friendly.' };

/** A call: greeting, then turns with a tool call and its result in the middle. */
function conversation(): ChatMessage[] {
  return [
    SYSTEM,
    { role: 'assistant', content: 'Hello, this is Ava from Acme Furniture. How can I help?' },
    { role: 'user', content: "Hi, this is Maria Lopez. I'm calling about my order 48213, a walnut dining table." },
    { role: 'assistant', content: 'Thanks Maria. Let me look that up for you.', toolCalls: [{ id: 'call_1', name: 'lookup_order', arguments: { order_id: '48213' } }] },
    { role: 'tool', toolCallId: 'call_1', content: '{"status":"in transit","carrier":"FastFreight","eta":"2024-06-14"}' },
    { role: 'assistant', content: 'Your table is in transit with FastFreight and should arrive on June 14th.' },
    { role: 'user', content: 'Can the delivery be in the afternoon? I work until noon on weekdays.' },
    { role: 'assistant', content: 'I can request an afternoon slot.', toolCalls: [{ id: 'call_2', name: 'request_slot', arguments: { order_id: '48213', slot: 'afternoon' } }] },
    { role: 'tool', toolCallId: 'call_2', content: '{"ok":true,"slot":"13:00-17:00"}' },
    { role: 'assistant', content: 'Done: the delivery is booked between 1 and 5 pm.' },
    { role: 'user', content: 'Great. Also, do you sell matching chairs in walnut?' },
    { role: 'assistant', content: 'Yes, the Oslo chair comes in walnut for 189 dollars each.' },
    { role: 'user', content: 'I might take four of them. Is there a discount for four?' },
    { role: 'assistant', content: 'For four chairs there is a ten percent bundle discount.' },
    { role: 'user', content: 'OK, please add four Oslo chairs to the order.' },
    { role: 'assistant', content: 'Adding them now.', toolCalls: [{ id: 'call_3', name: 'add_items', arguments: { order_id: '48213', sku: 'OSLO-WAL', quantity: 4 } }] },
    { role: 'tool', toolCallId: 'call_3', content: '{"ok":true,"total":"680.40"}' },
  ];
}

/** The conversation messages of a result must be a suffix of the input starting at a user message. */
function expectVerbatimSuffix(input: readonly ChatMessage[], result: FitResult): void {
  const kept = result.messages.filter((message) => !(message.role === 'system' && message.content.startsWith(SUMMARY_NOTE_PREFIX)));
  expect(kept[0]).toBe(input[0]);
  expect(kept.slice(1)).toEqual(input.slice(result.summarizedUpTo));
  if (result.summaryKind !== 'none' || result.summarizedUpTo > 1) expect(input[result.summarizedUpTo]?.role).toBe('user');
}

/** Every tool result kept has the assistant tool call it answers, and vice versa. */
function expectToolPairsIntact(messages: readonly ChatMessage[]): void {
  const callIds = new Set(messages.flatMap((message) => (message.role === 'assistant' ? (message.toolCalls ?? []).map((call) => call.id) : [])));
  const resultIds = new Set(messages.flatMap((message) => (message.role === 'tool' ? [message.toolCallId] : [])));
  expect([...resultIds].sort()).toEqual([...callIds].sort());
}

describe('estimateTokens', () => {
  it('is a conservative character-based estimate', () => {
    expect(estimateTokens('')).toBe(0);
    expect(estimateTokens('hello world')).toBe(Math.ceil(11 / 3.5));
    expect(estimateTokens('日本語')).toBe(3);
    expect(estimateMessagesTokens([{ role: 'user', content: 'hi' }])).toBe(MESSAGE_OVERHEAD_TOKENS + 1);
  });
});

describe('fitToBudget', () => {
  const input = conversation();
  const total = estimateMessagesTokens(input);

  it('leaves a conversation under budget unchanged', () => {
    const result = fitToBudget(input, { budgetTokens: total });
    expect(result).toEqual({ messages: input, summarizedUpTo: 1, droppedTokens: 0, summaryKind: 'none' });
    expect(result.messages).not.toBe(input);
  });

  it('keeps the system prompt, one summary note and the recent turns verbatim when over budget', () => {
    const result = fitToBudget(input, { budgetTokens: total - 20, keepRecentTurns: 2 });
    expect(result.messages[0]).toBe(SYSTEM);
    expect(result.messages[1]?.role).toBe('system');
    expect(result.messages[1]?.content.startsWith(SUMMARY_NOTE_PREFIX)).toBe(true);
    // The last two turns: "I might take four…" and "OK, please add four…" with its tool call and result.
    expect(result.summarizedUpTo).toBe(12);
    expect(result.messages.slice(2)).toEqual(input.slice(12));
    expect(result.droppedTokens).toBe(estimateMessagesTokens(input.slice(1, 12)));
    expect(estimateMessagesTokens(result.messages)).toBeLessThanOrEqual(total - 20);
    expectToolPairsIntact(result.messages);
  });

  it('uses the given summary', () => {
    const summary = 'Maria Lopez, order 48213 (walnut table), in transit, delivery booked 13:00-17:00 on June 14.';
    const result = fitToBudget(input, { budgetTokens: total - 20, keepRecentTurns: 2, summary });
    expect(result.messages[1]).toEqual({ role: 'system', content: `${SUMMARY_NOTE_PREFIX}: ${summary}` });
    expect(result.summaryKind).toBe('provided');
  });

  it('falls back to a marked extractive summary of the older turns', () => {
    const result = fitToBudget(input, { budgetTokens: total - 20, keepRecentTurns: 2 });
    expect(result.summaryKind).toBe('extractive');
    const note = result.messages[1]?.content ?? '';
    expect(note.startsWith(`${SUMMARY_NOTE_PREFIX} ${EXTRACTIVE_SUMMARY_MARKER}: `)).toBe(true);
    expect(note).toContain('Maria Lopez');
    expect(note).toContain('48213');
    expect(note).toContain('request_slot');
  });

  it('respects the budget by its own estimate, keeps tool pairs together and the latest user message', () => {
    const latestUser = input[14];
    const latestTurnTokens = estimateMessagesTokens([SYSTEM, ...input.slice(14)]);
    for (let budget = latestTurnTokens; budget <= total + 10; budget++) {
      const result = fitToBudget(input, { budgetTokens: budget, keepRecentTurns: 3 });
      expect(estimateMessagesTokens(result.messages), `budget ${budget}`).toBeLessThanOrEqual(budget);
      expect(result.messages).toContain(latestUser);
      expect(result.messages.at(-1)).toBe(input.at(-1));
      expectVerbatimSuffix(input, result);
      expectToolPairsIntact(result.messages);
      expect(result.messages.filter((message) => message.content.startsWith(SUMMARY_NOTE_PREFIX)).length).toBeLessThanOrEqual(1);
    }
  });

  it('drops older verbatim turns and shortens the summary as the budget tightens', () => {
    const roomy = fitToBudget(input, { budgetTokens: total - 20, keepRecentTurns: 3 });
    const tight = fitToBudget(input, { budgetTokens: estimateMessagesTokens([SYSTEM, ...input.slice(14)]) + 30, keepRecentTurns: 3 });
    expect(tight.summarizedUpTo).toBe(14);
    expect(tight.summarizedUpTo).toBeGreaterThan(roomy.summarizedUpTo);
    expect((tight.messages[1]?.content ?? '').length).toBeLessThan((roomy.messages[1]?.content ?? '').length);
  });

  it('keeps the latest turn even when it alone is over budget', () => {
    const result = fitToBudget(input, { budgetTokens: 10 });
    expect(result.messages).toEqual([SYSTEM, ...input.slice(14)]);
    expect(result.summarizedUpTo).toBe(14);
    expect(result.summaryKind).toBe('none');
  });

  it('keeps the boundary a summary was made for, and adds excerpts of what aged out after it', () => {
    const summary = 'Maria Lopez called about order 48213.';
    // The summary covers up to message 6 (the afternoon-delivery turn is verbatim): it still fits.
    const stable = fitToBudget(input, { budgetTokens: total - 20, keepRecentTurns: 2, summary, summaryCoversUpTo: 6 });
    expect(stable.summarizedUpTo).toBe(6);
    expect(stable.messages[1]?.content).toBe(`${SUMMARY_NOTE_PREFIX}: ${summary}`);
    // With less room the boundary moves past it: the uncovered messages appear as excerpts.
    const moved = fitToBudget(input, { budgetTokens: estimateMessagesTokens([SYSTEM, ...input.slice(12)]) + 60, keepRecentTurns: 2, summary, summaryCoversUpTo: 6 });
    expect(moved.summarizedUpTo).toBeGreaterThan(6);
    expect(moved.messages[1]?.content.startsWith(`${SUMMARY_NOTE_PREFIX}: ${summary} Later: `)).toBe(true);
    expect(moved.messages[1]?.content).toContain('afternoon');
  });
});

describe('summaryRequestMessages', () => {
  it('asks for a short factual summary of the older messages', () => {
    const older = conversation().slice(1, 10);
    const request = summaryRequestMessages(older);
    expect(request.map((message) => message.role)).toEqual(['system', 'user']);
    expect(request[0]?.content).toMatch(/80 words/);
    expect(request[0]?.content).toMatch(/names, numbers/);
    const transcript = request[1]?.content ?? '';
    expect(transcript).toContain('Caller: Hi, this is Maria Lopez.');
    expect(transcript).toContain('Agent called request_slot with {"order_id":"48213","slot":"afternoon"}');
    expect(transcript).toContain('Tool result: {"ok":true,"slot":"13:00-17:00"}');
  });

  it('folds in the previous summary', () => {
    const request = summaryRequestMessages([{ role: 'user', content: 'Add four chairs.' }], 'Maria, order 48213.');
    expect(request[1]?.content).toContain('Summary of the call so far:\nMaria, order 48213.');
    expect(request[1]?.content).toContain('Caller: Add four chairs.');
  });
});
