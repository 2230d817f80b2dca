// Recording: the TwiML that asks Twilio to record, the recording callback's validation, and the
// ledger's per-number recording policy (cached, and "don't record" when the store can't answer).
import { describe, expect, it } from 'vitest';
import { CallLedger } from '../../src/store/call-ledger.js';
import type { CallStore } from '../../src/store/call-store.js';
import type { NumberProfile } from '../../src/store/types.js';
import { parseRecordingCallback } from '../../src/telephony/twilio/routes.js';
import { connectStreamTwiml } from '../../twiml/voice-response.js';
import { waitFor } from '../helpers/wait-for.js';

const CALL_SID = 'CA0123456789abcdef0123456789abcdef';
const RECORDING_SID = 'RE0123456789abcdef0123456789abcdef';

describe('recording TwiML', () => {
  const base = { streamUrl: 'wss://agent.example.com/twilio/media', parameters: { callSid: CALL_SID }, afterStreamUrl: 'https://agent.example.com/twilio/after-stream' };

  it('starts a dual-channel, untrimmed recording before the stream, reporting every status to our callback', () => {
    const xml = connectStreamTwiml({ ...base, recordingStatusCallbackUrl: 'https://agent.example.com/twilio/recording' });
    expect(xml).toContain(
      '<Start><Recording recordingStatusCallback="https://agent.example.com/twilio/recording" recordingStatusCallbackMethod="POST" recordingStatusCallbackEvent="in-progress completed absent" channels="dual" trim="do-not-trim"/></Start><Connect>',
    );
  });

  it('records nothing unless asked', () => {
    expect(connectStreamTwiml(base)).not.toContain('Recording');
  });
});

describe('parseRecordingCallback', () => {
  const form = (extra: Record<string, string>): Record<string, string> => ({ RecordingSid: RECORDING_SID, RecordingStatus: 'completed', ...extra });

  it("takes Twilio's fields", () => {
    expect(parseRecordingCallback(CALL_SID, form({ RecordingUrl: 'https://api.twilio.com/rec/RE1', RecordingDuration: '42', RecordingChannels: '2' }))).toEqual({
      recordingSid: RECORDING_SID,
      callSid: CALL_SID,
      url: 'https://api.twilio.com/rec/RE1',
      status: 'completed',
      durationSeconds: 42,
      channels: 2,
    });
  });

  it('leaves out what an in-progress callback does not carry', () => {
    expect(parseRecordingCallback(CALL_SID, form({ RecordingStatus: 'in-progress' }))).toMatchObject({ status: 'in-progress', durationSeconds: null, channels: null, url: null });
  });

  it.each([
    [{ RecordingSid: 'RE12' }, /RecordingSid/],
    [{ RecordingSid: '' }, /RecordingSid/],
    [{ RecordingStatus: 'stopped' }, /RecordingStatus/],
    [{ RecordingDuration: '-3' }, /RecordingDuration/],
    [{ RecordingDuration: '1.5' }, /RecordingDuration/],
    [{ RecordingChannels: '3' }, /RecordingChannels/],
    [{ RecordingUrl: 'javascript:alert(1)' }, /RecordingUrl/],
  ])('refuses %o with a reason', (extra, reason) => {
    const parsed = parseRecordingCallback(CALL_SID, form(extra));
    expect(typeof parsed).toBe('string');
    expect(parsed).toMatch(reason);
  });
});

describe('CallLedger recording policy', () => {
  const profile = (recordingEnabled: boolean): NumberProfile => ({
    number: '+15550001111',
    name: 'Line',
    scriptPath: null,
    prompt: null,
    voice: null,
    language: null,
    recordingEnabled,
    storeUnredacted: false,
    dispositions: [],
    createdAt: new Date(),
    updatedAt: new Date(),
  });
  const warnings: object[] = [];
  const logger = { warn: (obj: object) => warnings.push(obj), error: () => undefined };

  it("follows the number's profile and reads it once per TTL", async () => {
    let reads = 0;
    const store = { getNumber: async () => (reads++, profile(true)) } as unknown as CallStore;
    const ledger = new CallLedger({ store, logger, policyTtlMs: 60_000 });
    expect(await ledger.recordingEnabled('+15550001111')).toBe(true);
    expect(await ledger.recordingEnabled('+15550001111')).toBe(true);
    expect(reads).toBe(1);
  });

  it('does not record an unknown number, a missing number, or when the store is too slow or failing', async () => {
    const unknown = new CallLedger({ store: { getNumber: async () => undefined } as unknown as CallStore, logger });
    expect(await unknown.recordingEnabled('+15550001111')).toBe(false);
    expect(await unknown.recordingEnabled(undefined)).toBe(false);
    const slow = new CallLedger({ store: { getNumber: () => new Promise(() => undefined) } as unknown as CallStore, logger, policyTimeoutMs: 20 });
    expect(await slow.recordingEnabled('+15550001111')).toBe(false);
    const failing = new CallLedger({ store: { getNumber: async () => Promise.reject(new Error('connection refused')) } as unknown as CallStore, logger });
    expect(await failing.recordingEnabled('+15550001111')).toBe(false);
    expect(warnings).toContainEqual(expect.objectContaining({ event: 'recording_policy_unavailable' }));
  });

  it('retries writing the call row until the store takes it', async () => {
    const attempts: string[] = [];
    const store = {
      upsertCall: async (input: { callSid: string }) => {
        attempts.push(input.callSid);
        if (attempts.length < 2) throw new Error('connection refused');
      },
    } as unknown as CallStore;
    const ledger = new CallLedger({ store, logger });
    ledger.callStarted({ callSid: CALL_SID, direction: 'inbound' });
    await waitFor('the second attempt', () => attempts.length === 2, 5000);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(attempts).toEqual([CALL_SID, CALL_SID]); // and no third once it was taken
  });

  it('keeps a recording callback the store refused and stores it once the store is back', async () => {
    const writes: string[] = [];
    let down = true;
    const store = {
      upsertRecording: async (input: { recordingSid: string }) => {
        writes.push(input.recordingSid);
        if (down) throw new Error('connection refused');
      },
    } as unknown as CallStore;
    const ledger = new CallLedger({ store, logger });
    const recording = { recordingSid: RECORDING_SID, callSid: CALL_SID, status: 'completed' };
    expect(await ledger.saveRecording(recording)).toBe('deferred');
    down = false;
    await waitFor('the deferred write', () => writes.length === 2, 5000);
    expect(writes).toEqual([RECORDING_SID, RECORDING_SID]);
    down = false;
    expect(await ledger.saveRecording(recording)).toBe('stored');
  });
});
