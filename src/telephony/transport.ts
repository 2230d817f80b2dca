/**
 * The provider-neutral face of one call's media stream. Provider adapters (Twilio now, Telnyx later)
 * implement `CallTransport` for what the session sends, and drive a `CallEventSink` with what the
 * caller's side sends. Nothing above this line knows which provider carries the call.
 */
import type { G711Encoding } from '../audio/g711.js';

export type CallEnding =
  /** Hang up the call. */
  | { kind: 'hang_up'; reason: string }
  /** Connect the caller to another number. */
  | { kind: 'transfer'; to: string; reason: string };

export interface CallTransport {
  readonly provider: 'twilio' | 'telnyx';
  /** Codec of the media both ways. */
  readonly encoding: G711Encoding;
  /** Whole 20 ms frames of encoded audio, already paced. */
  sendAudio(encoded: Uint8Array): void;
  sendMark(name: string): void;
  /** Drop all audio buffered at the far end (marks pending there are echoed back). */
  clear(): void;
  /** Ends the media stream and tells the provider what to do with the call next. */
  finish(ending: CallEnding): void;
  /** Closes the media stream if it is still open (the call already ended elsewhere). Idempotent. */
  close(reason: string): void;
}

/** What a provider adapter reports about the call, in provider-neutral terms. */
export interface CallEventSink {
  /** 8 kHz PCM16 from the caller. */
  onAudio(pcm8k: Int16Array): void;
  onDtmf(digit: string): void;
  /** A mark we sent came back: the audio before it has played (or was cleared). */
  onMarkEcho(name: string): void;
  /** The stream is over (provider `stop`, socket closed, or status callback). Idempotent. */
  onStreamEnd(reason: string): void;
}
