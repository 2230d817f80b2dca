// Guards against the scripted agent picking the wrong reply, dropping its hang-up/transfer action, or ignoring tool results and aborts.
import { describe, expect, it } from 'vitest';
import { loadAgentScript, type AgentScript } from '../../src/engines/local/agent-script.js';
import { ScriptedAgent, chunkReply, matchIntent } from '../../src/engines/local/scripted-agent.js';
import type { ChatMessage, LlmEvent, LlmRequest } from '../../src/engines/types.js';
import { collect, text } from '../helpers/llm-events.js';

const script: AgentScript = {
  name: 'Test Shop',
  greeting: 'Hello.',
  fallback: 'Sorry, I can help with hours or directions.',
  apology: 'Sorry, I had trouble with that.',
  intents: [
    { name: 'hours', keywords: ['hours', 'open', 'what time'], reply: 'We are open from nine to five, Monday to Friday.' },
    { name: 'directions', keywords: ['where', 'address', 'open house'], reply: 'We are at 1 Main Street.' },
    { name: 'human', keywords: ['person', 'talk to'], reply: 'Connecting you now.', action: { type: 'transfer', to: '+15555550123' } },
    { name: 'bye', keywords: ["that's all", 'bye'], reply: 'Thanks for calling. Goodbye!', action: { type: 'hang_up' } },
  ],
};

function request(messages: ChatMessage[], signal = new AbortController().signal): LlmRequest {
  return { callId: 'CA-test', messages, tools: [], signal };
}

describe('matchIntent', () => {
  it('matches case-insensitively and ignores punctuation', () => {
    expect(matchIntent(script, 'WHAT are your HOURS?!')?.name).toBe('hours');
    expect(matchIntent(script, "No, that's all. Thanks")?.name).toBe('bye');
    expect(matchIntent(script, 'no thats all')?.name).toBe('bye');
  });

  it('matches whole words only, not parts of words', () => {
    expect(matchIntent(script, 'I want to reopen my order')).toBeUndefined();
    expect(matchIntent(script, 'nobody here')).toBeUndefined();
    expect(matchIntent(script, 'a personal question')).toBeUndefined();
  });

  it('matches a phrase only when its words are adjacent', () => {
    expect(matchIntent(script, 'I want to talk to a manager')?.name).toBe('human');
    expect(matchIntent(script, 'talk later to me')).toBeUndefined();
  });

  it('picks the intent with the most keyword hits', () => {
    // hours: "open" (1); directions: "where" + "open house" (2).
    expect(matchIntent(script, 'where is the open house')?.name).toBe('directions');
  });

  it('breaks ties by the order of the intents in the script', () => {
    expect(matchIntent(script, 'where are you open')?.name).toBe('hours');
  });

  it('returns undefined when nothing matches', () => {
    expect(matchIntent(script, 'tell me a joke')).toBeUndefined();
    expect(matchIntent(script, '')).toBeUndefined();
  });
});

describe('chunkReply', () => {
  it('splits a reply into deltas of a few words that join back to the exact reply', () => {
    const reply = 'We are open from nine to five, Monday to Friday.';
    const deltas = chunkReply(reply, 3);
    expect(deltas.join('')).toBe(reply);
    expect(deltas.length).toBe(4);
    expect(deltas[0]).toBe('We are open ');
  });
});

describe('ScriptedAgent', () => {
  it('streams the matched reply in several text deltas and then done', async () => {
    const events = await collect(new ScriptedAgent(script).generate(request([{ role: 'user', content: 'What are your hours?' }])));
    const texts = events.filter((e) => e.type === 'text');
    expect(texts.length).toBeGreaterThan(1);
    expect(text(events)).toBe('We are open from nine to five, Monday to Friday.');
    expect(events.at(-1)).toEqual({ type: 'done' });
    expect(events.filter((e) => e.type === 'done')).toHaveLength(1);
  });

  it('answers with the fallback line when no intent matches', async () => {
    const events = await collect(new ScriptedAgent(script).generate(request([{ role: 'user', content: 'sing me a song' }])));
    expect(text(events)).toBe(script.fallback);
    expect(events.some((e) => e.type === 'tool_call')).toBe(false);
  });

  it('answers the latest user message, not an earlier one', async () => {
    const messages: ChatMessage[] = [
      { role: 'system', content: 'be nice' },
      { role: 'user', content: 'what are your hours' },
      { role: 'assistant', content: 'We are open from nine to five.' },
      { role: 'user', content: "ok that's all, bye" },
    ];
    const events = await collect(new ScriptedAgent(script).generate(request(messages)));
    expect(text(events)).toBe('Thanks for calling. Goodbye!');
  });

  it('emits end_call after the goodbye text for a hang-up intent', async () => {
    const events = await collect(new ScriptedAgent(script).generate(request([{ role: 'user', content: 'Bye!' }])));
    const callIndex = events.findIndex((e) => e.type === 'tool_call');
    expect(callIndex).toBeGreaterThan(0);
    expect(events.slice(0, callIndex).every((e) => e.type === 'text')).toBe(true);
    const call = events[callIndex];
    expect(call?.type === 'tool_call' && call.call.name).toBe('end_call');
    expect(call?.type === 'tool_call' && call.call.id).toMatch(/\S/);
    expect(events.slice(callIndex + 1)).toEqual([{ type: 'done' }]);
  });

  it('emits transfer_call with the target number for a transfer intent, with a fresh id each time', async () => {
    const agent = new ScriptedAgent(script);
    const first = await collect(agent.generate(request([{ role: 'user', content: 'Can I talk to a person?' }])));
    const second = await collect(agent.generate(request([{ role: 'user', content: 'person please' }])));
    const calls = [...first, ...second].flatMap((e) => (e.type === 'tool_call' ? [e.call] : []));
    expect(calls).toHaveLength(2);
    expect(calls[0]?.name).toBe('transfer_call');
    expect(calls[0]?.arguments['to']).toBe('+15555550123');
    expect(calls[0]?.id).not.toBe(calls[1]?.id);
  });

  it('replies with only done when the latest message is a tool result', async () => {
    const messages: ChatMessage[] = [
      { role: 'user', content: 'bye' },
      { role: 'assistant', content: 'Goodbye!', toolCalls: [{ id: 'c1', name: 'end_call', arguments: {} }] },
      { role: 'tool', toolCallId: 'c1', content: 'ok' },
    ];
    expect(await collect(new ScriptedAgent(script).generate(request(messages)))).toEqual([{ type: 'done' }]);
  });

  it('stops yielding as soon as the signal is aborted', async () => {
    const controller = new AbortController();
    const events: LlmEvent[] = [];
    for await (const event of new ScriptedAgent(script).generate(request([{ role: 'user', content: 'bye' }], controller.signal))) {
      events.push(event);
      controller.abort();
    }
    expect(events).toHaveLength(1);
    expect(events[0]?.type).toBe('text');
  });

  it('yields nothing when the signal is already aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    expect(await collect(new ScriptedAgent(script).generate(request([{ role: 'user', content: 'hours' }], controller.signal)))).toEqual([]);
  });
});

describe('the example dental-office script', () => {
  const example = loadAgentScript('examples/agent-script.json');
  const agent = new ScriptedAgent(example);
  const cases: [string, string][] = [
    ['What are your hours on Friday?', 'hours'],
    ['Are you open on Saturday?', 'hours'],
    ['Where are you located?', 'address'],
    ['Is there parking?', 'address'],
    ["I'd like to book a cleaning.", 'book_appointment'],
    ['I need to cancel my appointment', 'change_appointment'],
    ['Can I talk to someone about my appointment?', 'talk_to_person'],
    ['I have a really bad toothache', 'emergency'],
    ['Do you take my insurance?', 'insurance'],
    ["No, that's all. Thanks, bye!", 'goodbye'],
  ];

  it.each(cases)('routes "%s" to the %s intent', (utterance, intent) => {
    expect(matchIntent(example, utterance)?.name).toBe(intent);
  });

  it('transfers a caller who asks for a person to an E.164 number', async () => {
    const events = await collect(agent.generate(request([{ role: 'user', content: 'Let me speak to a real person.' }])));
    const call = events.find((e) => e.type === 'tool_call');
    expect(call?.type === 'tool_call' && call.call.name).toBe('transfer_call');
    expect(call?.type === 'tool_call' && call.call.arguments['to']).toMatch(/^\+[1-9]\d{6,14}$/);
    expect(text(events).length).toBeGreaterThan(0);
  });

  it('says goodbye and then hangs up when the caller is done', async () => {
    const events = await collect(agent.generate(request([{ role: 'user', content: 'That is all, goodbye.' }])));
    expect(text(events)).toMatch(/day/i);
    expect(events.at(-2)).toMatchObject({ type: 'tool_call', call: { name: 'end_call' } });
    expect(events.at(-1)).toEqual({ type: 'done' });
  });

  it('keeps every reply short enough to speak in a breath or two', () => {
    for (const line of [example.greeting, example.fallback, example.apology, ...example.intents.map((i) => i.reply)]) {
      expect(line.split(/\s+/).length, line).toBeLessThanOrEqual(30);
    }
  });
});
