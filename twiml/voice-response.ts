/** TwiML documents the server answers Twilio with, built with the `twilio` package. */
import twilio from 'twilio';

export interface StreamTwimlOptions {
  /** wss:// URL of our media socket (no query string: Twilio forbids it). */
  streamUrl: string;
  /** Custom parameters delivered in the stream's `start.customParameters`. */
  parameters: Record<string, string>;
  /** Where Twilio goes once our socket closes: lets the server transfer or hang up the call. */
  afterStreamUrl: string;
  /**
   * Record the call (the number's profile asks for it): `<Start><Recording>` before the stream, both
   * parties on separate channels, untrimmed so timestamps line up with the transcript. Twilio posts
   * the recording's metadata to this URL when it is in progress, completed or absent.
   */
  recordingStatusCallbackUrl?: string;
}

export function connectStreamTwiml(options: StreamTwimlOptions): string {
  const response = new twilio.twiml.VoiceResponse();
  if (options.recordingStatusCallbackUrl !== undefined) {
    response.start().recording({
      recordingStatusCallback: options.recordingStatusCallbackUrl,
      recordingStatusCallbackMethod: 'POST',
      recordingStatusCallbackEvent: ['in-progress', 'completed', 'absent'],
      channels: 'dual',
      trim: 'do-not-trim',
    });
  }
  const stream = response.connect().stream({ url: options.streamUrl });
  for (const [name, value] of Object.entries(options.parameters)) stream.parameter({ name, value });
  // Twilio runs the verbs after <Connect> only once our server closes the socket.
  response.redirect({ method: 'POST' }, options.afterStreamUrl);
  return response.toString();
}

export function transferTwiml(to: string, callerId?: string): string {
  const response = new twilio.twiml.VoiceResponse();
  response.dial(callerId === undefined ? {} : { callerId }, to);
  return response.toString();
}

export function hangUpTwiml(message?: string): string {
  const response = new twilio.twiml.VoiceResponse();
  if (message !== undefined) response.say(message);
  response.hangup();
  return response.toString();
}
