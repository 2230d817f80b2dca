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

/** POSTs a form to one of the server's webhooks, signed as Twilio signs it. */
export function postSignedForm(server: { url: string }, path: string, params: Record<string, string>): Promise<Response> {
  return fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      'x-twilio-signature': twilio.getExpectedTwilioSignature(TEST_AUTH_TOKEN, `${server.url}${path}`, params),
    },
    body: new URLSearchParams(params).toString(),
  });
}

export const TEST_ACCOUNT_SID = 'AC0123456789abcdef0123456789abcdef';

/** Posts a Twilio status callback for `callSid`, signed as Twilio signs it. */
export function postStatusCallback(server: { url: string }, callSid: string, status: string, duration = '1'): Promise<Response> {
  return postSignedForm(server, '/twilio/status', { CallSid: callSid, AccountSid: TEST_ACCOUNT_SID, CallStatus: status, CallDuration: duration });
}

/** Posts a recording status callback (the fields of Twilio's recordingStatusCallback), signed. */
export function postRecordingCallback(
  server: { url: string },
  fields: { callSid: string; recordingSid: string; status: 'in-progress' | 'completed' | 'absent'; durationSeconds?: number },
): Promise<Response> {
  const params: Record<string, string> = {
    AccountSid: TEST_ACCOUNT_SID,
    CallSid: fields.callSid,
    RecordingSid: fields.recordingSid,
    RecordingUrl: `https://api.twilio.com/2010-04-01/Accounts/${TEST_ACCOUNT_SID}/Recordings/${fields.recordingSid}`,
    RecordingStatus: fields.status,
    RecordingChannels: '2',
    RecordingStartTime: new Date().toUTCString(),
    RecordingSource: 'StartCallRecordingTwiML',
    RecordingTrack: 'both',
    ...(fields.durationSeconds === undefined ? {} : { RecordingDuration: String(fields.durationSeconds) }),
  };
  return postSignedForm(server, '/twilio/recording', params);
}
