// Guards against a server that starts with bad settings or silently skips webhook signature checks.
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

const base = { TWILIO_AUTH_TOKEN: 't', AGENT_SCRIPT: 'examples/agent-script.json' };

describe('configuration', () => {
  it('uses the documented defaults', () => {
    const config = loadConfig(base);
    expect(config.port).toBe(8080);
    expect(config.turn).toEqual({ endOfTurnSilenceMs: 500, minSpeechMs: 100, bargeInMinSpeechMs: 150, backchannelMaxMs: 800, vadThreshold: 0.5, echoGuard: true, vadNoiseGate: true, vadBatchWindowMs: 24 });
    expect(config.llm).toBeUndefined();
    expect(loadConfig({ ...base, VAD_NOISE_GATE: 'off' }).turn.vadNoiseGate).toBe(false);
    expect(() => loadConfig({ ...base, VAD_NOISE_GATE: 'maybe' })).toThrow(/VAD_NOISE_GATE/);
    expect(loadConfig({ ...base, ECHO_GUARD: 'off' }).turn.echoGuard).toBe(false);
    expect(() => loadConfig({ ...base, ECHO_GUARD: 'yes' })).toThrow(/ECHO_GUARD/);
  });

  it('takes BACKCHANNEL_MAX_MS of 0 (off) or above the barge-in minimum, and refuses a maximum at or under it', () => {
    expect(loadConfig({ ...base, BACKCHANNEL_MAX_MS: '0' }).turn.backchannelMaxMs).toBe(0);
    expect(loadConfig({ ...base, BACKCHANNEL_MAX_MS: '1200', BARGE_IN_MIN_SPEECH_MS: '200' }).turn.backchannelMaxMs).toBe(1200);
    expect(() => loadConfig({ ...base, BACKCHANNEL_MAX_MS: '150' })).toThrow(/BACKCHANNEL_MAX_MS=150 must be 0 \(off\) or more than BARGE_IN_MIN_SPEECH_MS \(150\)/);
    expect(() => loadConfig({ ...base, BACKCHANNEL_MAX_MS: 'long' })).toThrow(/BACKCHANNEL_MAX_MS/);
  });

  it('drains for 300 s by default and validates DRAIN_TIMEOUT, DRAIN_NEW_CALLS and API_KEYS', () => {
    expect(loadConfig(base).drain).toEqual({ timeoutSeconds: 300, newCalls: 'decline' });
    expect(loadConfig(base).apiKeys.size).toBe(0);
    expect(loadConfig({ ...base, API_KEYS: 'analyst-key-0123456789:analyst,admin-key-0123456789ab:admin' }).apiKeys.size).toBe(2);
    expect(() => loadConfig({ ...base, DRAIN_TIMEOUT: 'soon' })).toThrow(/DRAIN_TIMEOUT/);
    expect(() => loadConfig({ ...base, DRAIN_NEW_CALLS: 'busy' })).toThrow(/DRAIN_NEW_CALLS/);
    expect(() => loadConfig({ ...base, API_KEYS: 'analyst-key-0123456789:root' })).toThrow(/API_KEYS/);
  });

  it('refuses to start without TWILIO_AUTH_TOKEN unless unsigned webhooks are allowed explicitly', () => {
    expect(() => loadConfig({ AGENT_SCRIPT: base.AGENT_SCRIPT })).toThrow(/TWILIO_AUTH_TOKEN is not set/);
    expect(loadConfig({ AGENT_SCRIPT: base.AGENT_SCRIPT, ALLOW_UNSIGNED_WEBHOOKS: '1' }).allowUnsignedWebhooks).toBe(true);
  });

  it('names every bad value in one error', () => {
    try {
      loadConfig({ ...base, PORT: 'eighty', PUBLIC_URL: 'ftp://x', LLM_URL: 'http://llm', OUTBOUND_FRAME_MS: '30', AGENT_SCRIPT: '/nope.json' });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      const problems = (error as ConfigError).problems.join('\n');
      expect(problems).toMatch(/PORT="eighty"/);
      expect(problems).toMatch(/PUBLIC_URL="ftp:\/\/x" must use https: or http:/);
      expect(problems).toMatch(/LLM_URL is set but LLM_MODEL is not/);
      expect(problems).toMatch(/OUTBOUND_FRAME_MS=30 must be 20, 40 or 60/);
      expect(problems).toMatch(/AGENT_SCRIPT=".*nope.json": no such file/);
    }
  });

  it('refuses an outbound lead shorter than one outbound message (nothing would ever be sent)', () => {
    expect(() => loadConfig({ ...base, OUTBOUND_FRAME_MS: '60', OUTBOUND_LEAD_MS: '40' })).toThrow(/OUTBOUND_LEAD_MS=40 must be at least OUTBOUND_FRAME_MS \(60\)/);
    expect(loadConfig({ ...base, OUTBOUND_FRAME_MS: '60', OUTBOUND_LEAD_MS: '60' }).audio.outboundLeadMs).toBe(60);
  });

  it('refuses a barge-in shorter than the speech that opens a turn (such a barge-in could never be confirmed)', () => {
    expect(() => loadConfig({ ...base, MIN_SPEECH_MS: '200', BARGE_IN_MIN_SPEECH_MS: '120' })).toThrow(/BARGE_IN_MIN_SPEECH_MS=120 must be at least MIN_SPEECH_MS \(200\)/);
    const equal = loadConfig({ ...base, MIN_SPEECH_MS: '200', BARGE_IN_MIN_SPEECH_MS: '200' });
    expect([equal.turn.minSpeechMs, equal.turn.bargeInMinSpeechMs]).toEqual([200, 200]);
  });

  it('names only the bad value when a turn timing is malformed, not also a cross-check against its default', () => {
    try {
      loadConfig({ ...base, MIN_SPEECH_MS: '300', BARGE_IN_MIN_SPEECH_MS: 'soon' });
      expect.unreachable('a malformed BARGE_IN_MIN_SPEECH_MS must stop the server');
    } catch (error) {
      expect((error as ConfigError).problems).toEqual(['BARGE_IN_MIN_SPEECH_MS="soon" must be an integer from 0 to 2000']);
    }
  });

  it('rejects an account SID that is not AC plus 32 hex digits', () => {
    expect(() => loadConfig({ ...base, TWILIO_ACCOUNT_SID: 'AC123' })).toThrow(/TWILIO_ACCOUNT_SID/);
  });
});
