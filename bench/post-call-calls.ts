/**
 * Realistic post-call jobs for bench/post-call.ts: 12-turn calls (the caller speaks, the agent
 * answers, per turn) from four scripts (a delivery, a card payment, an appointment, an identity
 * check), with the PII a real call carries — phone numbers written and spoken digit by digit, a
 * Luhn-valid card number, an SSN after its cue, e-mail addresses written and spoken — and prices,
 * times and dates the redactor must leave alone. Every agent part has a latency waterfall like the
 * one the session writes (ms relative to the turn decision), some are barged in on, and the turns
 * carry offsets from the call's start. Seeded, so every run builds the same calls.
 */
import type { PostCallJob, PostCallTurn } from '../src/post-call/job.js';

/** A seeded PRNG (mulberry32): the same calls on every run. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const DIGIT_WORDS = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'];
const FIRST_NAMES = ['Maria', 'James', 'Priya', 'Tom', 'Aisha', 'Daniel', 'Elena', 'Kevin', 'Sofia', 'Marcus'];
const LAST_NAMES = ['Garcia', 'Miller', 'Patel', 'Nguyen', 'Okafor', 'Schmidt', 'Rossi', 'Brown', 'Kowalski', 'Chen'];
const DOMAINS = ['gmail.com', 'outlook.com', 'yahoo.com', 'example.org'];

interface Pii {
  first: string;
  last: string;
  phone: string;
  spelledPhone: string;
  card: string;
  cardLast4: string;
  ssn: string;
  email: string;
  spokenEmail: string;
  order: string;
  price: string;
}

function digits(rand: () => number, n: number): string {
  let out = '';
  for (let i = 0; i < n; i++) out += String(Math.floor(rand() * 10));
  return out;
}

/** A 16-digit Visa-like number with a valid Luhn check digit. */
function cardNumber(rand: () => number): string {
  const body = `4${digits(rand, 14)}`;
  let sum = 0;
  for (let i = 0; i < body.length; i++) {
    // From the right, the check digit's neighbour is doubled first.
    let d = Number(body[body.length - 1 - i]);
    if (i % 2 === 0) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return body + String((10 - (sum % 10)) % 10);
}

function piiFor(rand: () => number): Pii {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rand() * list.length)]!;
  const first = pick(FIRST_NAMES);
  const last = pick(LAST_NAMES);
  const phoneDigits = `${200 + Math.floor(rand() * 700)}${200 + Math.floor(rand() * 700)}${digits(rand, 4)}`;
  const card = cardNumber(rand);
  const user = `${first}.${last}`.toLowerCase();
  const domain = pick(DOMAINS);
  return {
    first,
    last,
    phone: `${phoneDigits.slice(0, 3)}-${phoneDigits.slice(3, 6)}-${phoneDigits.slice(6)}`,
    spelledPhone: [...phoneDigits].map((d) => DIGIT_WORDS[Number(d)]).join(' '),
    card: card.replace(/(\d{4})(?=\d)/g, '$1 '),
    cardLast4: card.slice(-4),
    ssn: `${100 + Math.floor(rand() * 500)}-${10 + Math.floor(rand() * 89)}-${1000 + Math.floor(rand() * 8999)}`,
    email: `${user}${Math.floor(rand() * 90) + 10}@${domain}`,
    spokenEmail: `${first.toLowerCase()} dot ${last.toLowerCase()} at ${domain.replace('.', ' dot ')}`,
    order: digits(rand, 8),
    price: `$${20 + Math.floor(rand() * 180)}.${digits(rand, 2)}`,
  };
}

type Script = (p: Pii) => Array<[caller: string, agent: string]>;

const SCRIPTS: readonly Script[] = [
  (p) => [
    ['Hi, I am calling about a delivery that was supposed to arrive yesterday.', 'I am sorry to hear that. Could you give me the order number, please?'],
    [`Sure, it is ${p.order}.`, `Thank you. I found order ${p.order} for ${p.first} ${p.last}, a standing desk. Is that right?`],
    ['Yes, that is the one. The tracking page has not changed in three days.', 'I see the parcel is held at the local depot because the address was incomplete.'],
    ['Oh, the apartment number was probably missing. It is apartment 4B.', 'Got it, I have added apartment 4B to the delivery address.'],
    ['Can it still come this week? I work from home on Thursday and Friday.', 'The earliest slot is Thursday between 9 and 12. Would that work for you?'],
    ['Thursday morning is perfect.', 'Great, I have booked Thursday from 9 to 12. The driver will call before arriving.'],
    [`Please have them call my mobile, ${p.phone}.`, 'I have noted that number for the driver.'],
    ['And could you send the confirmation by email as well?', 'Of course. Which address should I use?'],
    [`It is ${p.email}.`, 'Thanks, the confirmation is on its way to that address.'],
    ['Will I get a refund of the express shipping since it is late?', `Yes, the express shipping fee of ${p.price} will be refunded within five business days.`],
    ['That is fair. Thank you for sorting this out.', 'You are welcome. Is there anything else I can help you with today?'],
    ['No, that is all. Have a nice day.', 'Thank you for calling, goodbye.'],
  ],
  (p) => [
    ['Hello, I got a notice that my last payment failed.', 'I can help with that. May I have your full name?'],
    [`${p.first} ${p.last}.`, `Thank you, ${p.first}. I see a declined payment of ${p.price} on the 3rd of the month.`],
    ['Yes, my old card expired. I would like to pay with a new one.', 'Sure. Please read me the card number when you are ready.'],
    [`It is ${p.card}.`, 'Thank you. And the expiry date?'],
    ['Oh nine twenty eight.', 'And the three digit security code on the back?'],
    ['Four one seven.', `Thanks. The payment of ${p.price} went through just now.`],
    ['Great. Can you make that the default card for future payments?', `Done: the card ending ${p.cardLast4} is now your default payment method.`],
    ['Was there a late fee?', 'There was a fee of $5.00, but I have waived it as a one-time courtesy.'],
    ['Thank you, I appreciate that.', 'Would you like a receipt by text message?'],
    [`Yes, to ${p.spelledPhone} please.`, 'The receipt has been sent to that number.'],
    ['Perfect. I think that is everything.', 'Is there anything else I can do for you today?'],
    ['No, thanks. Bye.', 'Thank you for calling, have a good evening.'],
  ],
  (p) => [
    ['Hi, I would like to book an appointment with Doctor Lee.', 'Certainly. Are you an existing patient?'],
    [`Yes, ${p.first} ${p.last}, date of birth 1985-04-12.`, `Thank you, ${p.first}, I found your record. What is the appointment for?`],
    ['A follow-up on my blood test results.', 'Doctor Lee has openings next Tuesday at 10:30 and Wednesday at 2:15.'],
    ['Tuesday at 10:30 works.', 'I have booked you for Tuesday at 10:30 with Doctor Lee.'],
    ['Can I get a reminder the day before?', 'Yes. Is the mobile number on file still current?'],
    [`No, it changed. The new one is ${p.spelledPhone}.`, 'Thank you, I have updated your mobile number.'],
    ['And my email changed too.', 'Go ahead, I am listening.'],
    [`It is ${p.spokenEmail}.`, 'Got it. The reminder will go to the new number and the confirmation to the new email.'],
    ['Do I need to fast before the visit?', 'No fasting is needed for a follow-up, but please bring a list of your current medications.'],
    ['Okay. What about the copay?', `The copay for a follow-up visit is ${p.price}, payable at check-in.`],
    ['Alright, thank you for your help.', 'You are welcome. Is there anything else?'],
    ['No, that is all.', 'See you on Tuesday, goodbye.'],
  ],
  (p) => [
    ['Hi, I am locked out of my online account.', 'I am sorry about that. I will need to verify your identity first. What is your full name?'],
    [`${p.first} ${p.last}.`, 'Thank you. Can you confirm your social security number?'],
    [`Sure, it is ${p.ssn}.`, 'Thank you, that matches our records.'],
    ['The site says my password expired but the reset email never arrives.', 'Let me check which email address is on the account.'],
    ['It should be my work address.', `The account has ${p.email}. Is that the one you use?`],
    ['Yes, but I have not seen any reset emails there.', 'They may be caught in a spam filter. I can send the reset link by text instead.'],
    [`Please send it to ${p.phone}.`, 'The reset link is on its way. It is valid for 30 minutes.'],
    ['Got it. Oh wait, it just arrived.', 'Great. Please choose a new password of at least 12 characters.'],
    ['Okay, done. I am logged in now.', 'Excellent. I also recommend turning on two-step verification in your settings.'],
    ['I will do that. Can you also check if there were any strange logins?', 'I see no sign-ins from new devices in the last 30 days.'],
    ['That is a relief. Thanks so much.', 'You are welcome. Anything else I can help with?'],
    ['No, that is everything. Bye.', 'Thank you for calling, goodbye.'],
  ],
];

/** A latency waterfall like the session's (ms relative to the turn decision). */
function waterfallFor(rand: () => number): Record<string, number> {
  const r = (lo: number, hi: number): number => Math.round((lo + rand() * (hi - lo)) * 10) / 10;
  const asrFinal = r(20, 120);
  const llmRequest = asrFinal + r(0.5, 2);
  const llmFirstToken = llmRequest + r(180, 450);
  const firstSegmentToTts = llmFirstToken + r(80, 260);
  const ttsFirstAudio = firstSegmentToTts + r(60, 180);
  return {
    speechEnd: -r(250, 600),
    asrFinal,
    llmRequest,
    llmFirstToken,
    firstSegmentToTts,
    ttsFirstAudio,
    firstFrameSent: Math.round((ttsFirstAudio + r(1, 6)) * 10) / 10,
  };
}

export interface BenchCallOptions {
  /** The number the calls came in on (its profile is read per job, as in production). */
  number: string;
  /** Makes the call SIDs unique to a run and a case. */
  sidPrefix: string;
  seed?: number;
}

/** `count` calls; the same `seed` gives the same calls (apart from the SIDs). */
export function benchCalls(count: number, options: BenchCallOptions): PostCallJob[] {
  const rand = seededRandom(options.seed ?? 1);
  const jobs: PostCallJob[] = [];
  const start = Date.parse('2025-06-02T09:00:00.000Z');
  for (let i = 0; i < count; i++) {
    const pii = piiFor(rand);
    const script = SCRIPTS[i % SCRIPTS.length]!(pii);
    const turns: PostCallTurn[] = [];
    let at = 1500 + Math.round(rand() * 1500);
    for (const [idx, [caller, agent]] of script.entries()) {
      // Speaking time ~ 65 ms per character, then the pause to the answer.
      const callerEnd = at + caller.length * 65;
      turns.push({ idx, speaker: 'caller', text: caller, interrupted: false, startMs: at, endMs: callerEnd });
      const agentStart = callerEnd + 700 + Math.round(rand() * 500);
      const interrupted = rand() < 0.12;
      const agentEnd = agentStart + Math.round(agent.length * 60 * (interrupted ? 0.5 : 1));
      turns.push({ idx, speaker: 'agent', text: agent, interrupted, latency: waterfallFor(rand), startMs: agentStart, endMs: agentEnd });
      at = agentEnd + 400 + Math.round(rand() * 900);
    }
    const startedAt = start + i * 60_000;
    jobs.push({
      callSid: `CA${options.sidPrefix}${i.toString(16).padStart(6, '0')}`,
      provider: 'twilio',
      direction: 'inbound',
      from: `+1555${String(2_000_000 + Math.floor(rand() * 7_000_000))}`,
      to: options.number,
      number: options.number,
      startedAt: new Date(startedAt).toISOString(),
      endedAt: new Date(startedAt + at + 800).toISOString(),
      endReason: rand() < 0.8 ? 'stop' : 'end_call',
      turns,
    });
  }
  return jobs;
}
