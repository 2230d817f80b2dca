/** The tools every agent has: ending the call and transferring it. They act after the reply plays. */
import type { ToolCall, ToolSpec } from '../engines/types.js';
import type { CallEnding } from '../telephony/transport.js';

export const BUILT_IN_TOOLS: ToolSpec[] = [
  {
    name: 'end_call',
    description: 'Hang up the call after your reply has been spoken. Use when the caller is done.',
    parameters: { type: 'object', properties: { reason: { type: 'string' } }, additionalProperties: false },
  },
  {
    name: 'transfer_call',
    description: 'Transfer the caller to a person at the given phone number (E.164) after your reply.',
    parameters: {
      type: 'object',
      properties: { to: { type: 'string', pattern: '^\\+[1-9]\\d{6,14}$' }, reason: { type: 'string' } },
      required: ['to'],
      additionalProperties: false,
    },
  },
];

const E164 = /^\+[1-9]\d{6,14}$/;

/** The call ending a built-in tool call asks for; undefined for unknown tools or bad arguments. */
export function parseBuiltInToolCall(call: ToolCall): CallEnding | undefined {
  const reason = typeof call.arguments['reason'] === 'string' ? call.arguments['reason'] : call.name;
  if (call.name === 'end_call') return { kind: 'hang_up', reason };
  if (call.name === 'transfer_call') {
    const to = call.arguments['to'];
    if (typeof to !== 'string' || !E164.test(to)) return undefined;
    return { kind: 'transfer', to, reason };
  }
  return undefined;
}
