/** Places a Twilio-exact call on a running test server and returns it with the server-side session and its events. */
import twilio from 'twilio';
import { expect } from 'vitest';
import type { CallSession, SessionEvent } from '../../src/agent/call-session.js';
import { placeCall } from '../../src/softphone/twilio-caller.js';
import { TEST_AUTH_TOKEN, type RunningServer } from './voice-test-server.js';

export async function placeTestCall(server: RunningServer, options: Omit<Parameters<typeof placeCall>[0], 'url' | 'authToken'>) {
  const events: SessionEvent[] = [];
  let session: CallSession | undefined;
  const unsubscribe = server.sessions.onStarted((s) => {
    session = s;
    s.onEvent((e) => events.push(e));
  });
  const ended = new Promise<CallSession>((resolve) => {
    const off = server.sessions.onEnded((s) => {
      off();
      resolve(s);
    });
  });
  try {
    const result = await placeCall({ url: server.url, authToken: TEST_AUTH_TOKEN, ...options });
    const endedSession = await ended;
    expect(endedSession).toBe(session);
    return { result, session: endedSession, events };
  } finally {
    unsubscribe();
  }
}

/** Posts a Twilio status callback for `callSid`, signed as Twilio signs it. */
export function postStatusCallback(server: RunningServer, callSid: string, status: string, duration = '1'): Promise<Response> {
  const params = { CallSid: callSid, AccountSid: 'AC0123456789abcdef0123456789abcdef', CallStatus: status, CallDuration: duration };
  return fetch(`${server.url}/twilio/status`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      'x-twilio-signature': twilio.getExpectedTwilioSignature(TEST_AUTH_TOKEN, `${server.url}/twilio/status`, params),
    },
    body: new URLSearchParams(params).toString(),
  });
}
