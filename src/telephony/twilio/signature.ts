/** X-Twilio-Signature checks, delegated to the `twilio` package (URL + sorted form params, HMAC-SHA1). */
import twilio from 'twilio';

export interface SignatureCheckInput {
  authToken: string;
  signature: string | undefined;
  /** The full public URL Twilio called: PUBLIC_URL + path (+ query string, if any). */
  url: string;
  params: Record<string, string>;
}

export function isValidTwilioSignature(input: SignatureCheckInput): boolean {
  if (input.signature === undefined || input.signature === '') return false;
  return twilio.validateRequest(input.authToken, input.signature, input.url, input.params);
}
