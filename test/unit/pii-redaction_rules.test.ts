// Guards against card numbers, SSNs, e-mail addresses, phone numbers and spelled-out digits reaching
// storage from a transcript — and against redaction eating times, counts, years and prices.
import { describe, expect, it } from 'vitest';
import {
  isValidSsn,
  luhnValid,
  PII_CATEGORIES,
  redactPii,
  redactTranscript,
  type PiiCategory,
} from '../../compliance/pii-redaction.js';

/** The redacted text and what each finding covered in the original, as "category:text". */
function run(text: string, categories?: PiiCategory[]): { text: string; found: string[] } {
  const result = redactPii(text, categories ? { categories } : {});
  return { text: result.text, found: result.findings.map((f) => `${f.category}:${text.slice(f.start, f.end)}`) };
}

const redacted = (text: string): string => redactPii(text).text;

describe('check functions', () => {
  it('Luhn accepts test card numbers and rejects a changed digit', () => {
    for (const n of ['4111111111111111', '5555555555554444', '378282246310005', '6011111111111117', '4012888888881881']) {
      expect(luhnValid(n)).toBe(true);
    }
    expect(luhnValid('4111111111111112')).toBe(false);
    expect(luhnValid('1234567812345678')).toBe(false);
    expect(luhnValid('4111 1111')).toBe(false);
  });

  it('SSN validity excludes the areas, groups and serials that are never issued', () => {
    expect(isValidSsn('123456789')).toBe(true);
    expect(isValidSsn('078051120')).toBe(true);
    expect(isValidSsn('000123456')).toBe(false);
    expect(isValidSsn('666123456')).toBe(false);
    expect(isValidSsn('900123456')).toBe(false);
    expect(isValidSsn('999123456')).toBe(false);
    expect(isValidSsn('123004567')).toBe(false);
    expect(isValidSsn('123450000')).toBe(false);
    expect(isValidSsn('12345678')).toBe(false);
  });
});

describe('card numbers', () => {
  it('finds cards written with spaces, dashes or no separators when they pass Luhn', () => {
    expect(run('my card is 4111 1111 1111 1111 thanks')).toEqual({
      text: 'my card is [CARD] thanks',
      found: ['card:4111 1111 1111 1111'],
    });
    expect(redacted('Card number 5555-5555-5555-4444.')).toBe('Card number [CARD].');
    expect(redacted('it is 4012888888881881')).toBe('it is [CARD]');
    expect(redacted('amex 3782 822463 10005 expires soon')).toBe('amex [CARD] expires soon');
    expect(redacted('discover 6011 1111 1111 1117')).toBe('discover [CARD]');
  });

  it('a 16-digit number that fails Luhn is not a card, but is still a redacted digit run', () => {
    expect(run('card 4111-1111-1111-1112 please')).toEqual({
      text: 'card [DIGITS] please',
      found: ['spelled_digits:4111-1111-1111-1112'],
    });
    expect(run('reference 1234567812345678')).toEqual({
      text: 'reference [DIGITS]',
      found: ['spelled_digits:1234567812345678'],
    });
  });

  it('finds a card read aloud digit by digit', () => {
    const spoken = 'four one one one one one one one one one one one one one one one';
    expect(run(`yeah it's ${spoken} okay`)).toEqual({ text: "yeah it's [CARD] okay", found: [`card:${spoken}`] });
    expect(redacted('five five five five, five five five five, five five five five, four four four four')).toBe('[CARD]');
  });

  it('a spelled 16-digit run that fails Luhn is a digit run, not a card', () => {
    expect(run('four one one one one one one one one one one one one one one two').found).toEqual([
      'spelled_digits:four one one one one one one one one one one one one one one two',
    ]);
  });

  it('finds cards mixing numerals, digit words and "double"/"triple"', () => {
    expect(redacted('it is 4111 one one one one one one one one one one one one')).toBe('it is [CARD]');
    expect(redacted('4111 1111 one one one one 1111')).toBe('[CARD]');
    expect(redacted('five five double five five five five five five five five five four four four four')).toBe('[CARD]');
    expect(redacted('four triple one, one one one one, one one one one, one one one one')).toBe('[CARD]');
  });

  it('keeps the card apart from the expiry and code read after it', () => {
    const text = 'four one one one one one one one one one one one one one one one, oh four two six, one two three';
    expect(run(text).found).toEqual([
      'card:four one one one one one one one one one one one one one one one',
      'spelled_digits:oh four two six, one two three',
    ]);
  });

  it('accepts a card written with commas between groups, as some ASR output does', () => {
    expect(redacted('4111, 1111, 1111, 1111')).toBe('[CARD]');
  });
});

describe('social security numbers', () => {
  it('finds AAA-GG-SSSS and AAA GG SSSS without any context', () => {
    expect(run('SSN 123-45-6789 and 123 45 6789')).toEqual({
      text: 'SSN [SSN] and [SSN]',
      found: ['ssn:123-45-6789', 'ssn:123 45 6789'],
    });
    expect(redacted('it was 078-05-1120 I think')).toBe('it was [SSN] I think');
  });

  it('finds nine bare digits only when the context talks about an SSN', () => {
    expect(redacted('my social security number is 123456789')).toBe('my social security number is [SSN]');
    expect(redacted('SSN: 123456789')).toBe('SSN: [SSN]');
    expect(redacted('123456789 is my social')).toBe('[SSN] is my social');
    expect(run('tracking 123456789').found).toEqual(['spelled_digits:123456789']);
  });

  it('finds an SSN read aloud after an SSN cue', () => {
    expect(run('my social is one two three four five six seven eight nine').found).toEqual([
      'ssn:one two three four five six seven eight nine',
    ]);
    expect(redacted('sure, the s s n is one two three, four five, six seven eight nine')).toBe('sure, the s s n is [SSN]');
    expect(redacted('one two three, four five, six seven eight nine')).toBe('[SSN]');
    expect(run('one two three four five six seven eight nine').found).toEqual([
      'spelled_digits:one two three four five six seven eight nine',
    ]);
  });

  it('never labels invalid areas, groups or serials as SSNs, but still redacts them', () => {
    for (const n of ['000-12-3456', '666-12-3456', '900-12-3456', '987-65-4321', '123-00-4567', '123-45-0000']) {
      expect(run(`SSN ${n}`).found).toEqual([`spelled_digits:${n}`]);
    }
  });

  it('treats "the last four of my social" as part of the SSN', () => {
    expect(redacted('the last four of my social are 6789')).toBe('the last four of my social are [SSN]');
    expect(redacted('last four of the social is six seven eight nine')).toBe('last four of the social is [SSN]');
  });
});

describe('e-mail addresses', () => {
  it('finds written addresses', () => {
    expect(run('write to john.smith+billing@example.co.uk today')).toEqual({
      text: 'write to [EMAIL] today',
      found: ['email:john.smith+billing@example.co.uk'],
    });
    expect(redacted('Email: JANE_DOE99@Mail.Example.com.')).toBe('Email: [EMAIL].');
    expect(redacted('john5551234567@gmail.com')).toBe('[EMAIL]');
  });

  it('finds spoken addresses as ASR writes them', () => {
    expect(run('it is john dot smith at example dot com thanks')).toEqual({
      text: 'it is [EMAIL] thanks',
      found: ['email:john dot smith at example dot com'],
    });
    expect(redacted('email me at john at gmail dot com')).toBe('email me at [EMAIL]');
    expect(redacted('jane underscore doe at yahoo dot co dot uk')).toBe('[EMAIL]');
    expect(redacted('J O H N at gmail dot com')).toBe('[EMAIL]');
    expect(redacted('it is mary-ann at hot mail dot com')).toBe('it is [EMAIL]');
    expect(redacted('john.smith at example.com')).toBe('[EMAIL]');
    expect(redacted('bob @ acme dot io')).toBe('[EMAIL]');
    expect(redacted('info at acme dot com')).toBe('[EMAIL]');
    expect(redacted('raj dot kumar at the rate gmail dot com')).toBe('[EMAIL]');
  });

  it('leaves sentences with "at" and "dot" alone', () => {
    for (const text of [
      'I work at acme dot com',
      'you can find us at acme dot com',
      'sign up at example dot com',
      'meet me at the office dot com',
      'the cat sat on the dotted line at the data center',
      "what's that dot at the top of the page",
      'I will be at home at nine',
      'the website is acme dot com',
      "we're at acme dot com",
    ]) {
      expect(redacted(text)).toBe(text);
    }
  });
});

describe('phone numbers', () => {
  it('finds NANP numbers in common written forms', () => {
    expect(run('call (555) 123-4567 or 555-123-4567 or 555.123.4567 or 5551234567')).toEqual({
      text: 'call [PHONE] or [PHONE] or [PHONE] or [PHONE]',
      found: ['phone:(555) 123-4567', 'phone:555-123-4567', 'phone:555.123.4567', 'phone:5551234567'],
    });
    expect(run('cell +1 555 123 4567, office 1-800-555-0199').found).toEqual([
      'phone:+1 555 123 4567',
      'phone:1-800-555-0199',
    ]);
    expect(redacted('+1 (555) 123-4567')).toBe('[PHONE]');
    expect(redacted('just 555-1234 is fine')).toBe('just [PHONE] is fine');
  });

  it('finds E.164 numbers', () => {
    expect(run('my UK number is +442079460958').found).toEqual(['phone:+442079460958']);
    expect(run('or +44 20 7946 0958.').found).toEqual(['phone:+44 20 7946 0958']);
    expect(redacted('+15551234567')).toBe('[PHONE]');
  });

  it('finds phone numbers read aloud', () => {
    expect(run('my number is five five five one two three four five six seven').found).toEqual([
      'phone:five five five one two three four five six seven',
    ]);
    expect(redacted('five five five, one two three, forty five sixty seven')).toBe('[PHONE]');
    expect(redacted('it is one eight hundred five five five one two one two')).toBe('it is [PHONE]');
    expect(redacted('plus four four two zero seven nine four six zero nine five eight')).toBe('[PHONE]');
    expect(redacted('five five five, one two three, double four five six')).toBe('[PHONE]');
  });

  it('finds phone numbers mixing numerals and words', () => {
    expect(run('my number is 555 one two three 4567').found).toEqual(['phone:555 one two three 4567']);
    expect(redacted('555 123 four five six seven')).toBe('[PHONE]');
  });

  it('leaves an interjection "oh" and a count after the number', () => {
    expect(run('Oh, five five five one two three four five six seven, two people').text).toBe('Oh, [PHONE], two people');
    expect(redacted('oh five five five one two three four five six seven')).toBe('oh [PHONE]');
    expect(redacted('two oh six five five five one two one two')).toBe('[PHONE]');
  });
});

describe('spelled and plain digit runs', () => {
  it('redacts spelled runs of four or more digit words', () => {
    expect(run('my pin is four three two one').found).toEqual(['spelled_digits:four three two one']);
    expect(redacted('the zip is nine oh two one oh')).toBe('the zip is [DIGITS]');
    expect(redacted('order number double seven three nine')).toBe('order number [DIGITS]');
    expect(redacted('code zero zero seven one')).toBe('code [DIGITS]');
    expect(redacted('member id one two three four five six seven eight nine one two three')).toBe('member id [DIGITS]');
  });

  it('redacts written runs of six or more digits', () => {
    expect(run('account 12345678 and order 12345')).toEqual({
      text: 'account [DIGITS] and order 12345',
      found: ['spelled_digits:12345678'],
    });
    expect(redacted('policy 00123456')).toBe('policy [DIGITS]');
    expect(redacted('routing 021 000 021')).toBe('routing [DIGITS]');
    expect(redacted('ticket ABC123456')).toBe('ticket ABC[DIGITS]');
  });

  it('redacts short mixed runs only with enough digits', () => {
    expect(redacted('one 2 3 4 5 6')).toBe('[DIGITS]');
    expect(redacted('it is 12 one 4')).toBe('it is 12 one 4');
  });

  it('leaves times, small counts, years, prices and amounts alone', () => {
    for (const text of [
      'can we do at 9 30 tomorrow',
      'at 9 30 two people',
      'table for two people at nine thirty',
      'twelve fifteen works, or half past one',
      'in 2024 we moved, in twenty twenty four',
      'it was $19.99 plus $1,250.00 shipping',
      'about 1,250,000 customers',
      'we paid 150000 dollars, or 2500 euros',
      'the rate is 3.75 percent, or 3.75%',
      'meet at 9:30 or 10:45:00',
      'born on 2024-05-01',
      'on the 21st 22nd 23rd and 24th',
      'from 3pm to 5pm',
      'the 1990s 2000s',
      'in 2019, 2020, 2021 and 2022',
      'I have two kids and three dogs',
      'one or two, maybe three',
      'nine one one',
      'order 12345',
      'room 204 on floor 12',
      'between 10 and 20 minutes',
      'it costs nineteen ninety nine',
      'oh oh oh oh',
      'the constructor said one two',
    ]) {
      expect(redacted(text)).toBe(text);
    }
  });
});

describe('findings', () => {
  it('reports several findings in one line, sorted, with offsets into the original text', () => {
    const text = 'Card 4111 1111 1111 1111, email jo@x.io, call (555) 123-4567, SSN 123-45-6789, acct 98765432.';
    const result = redactPii(text);
    expect(result.findings.map((f) => f.category)).toEqual(['card', 'email', 'phone', 'ssn', 'spelled_digits']);
    expect(result.findings.map((f) => text.slice(f.start, f.end))).toEqual([
      '4111 1111 1111 1111',
      'jo@x.io',
      '(555) 123-4567',
      '123-45-6789',
      '98765432',
    ]);
    expect(result.text).toBe('Card [CARD], email [EMAIL], call [PHONE], SSN [SSN], acct [DIGITS].');
    for (let i = 1; i < result.findings.length; i++) {
      expect(result.findings[i]!.start).toBeGreaterThanOrEqual(result.findings[i - 1]!.end);
    }
  });

  it('rebuilding the text from the findings gives the redacted text', () => {
    const text = 'hi my number is five five five one two three four five six seven and my email is a dot b at c dot com';
    const { text: out, findings } = redactPii(text);
    let rebuilt = '';
    let at = 0;
    for (const f of findings) {
      rebuilt += `${text.slice(at, f.start)}<${f.category}>`;
      at = f.end;
    }
    rebuilt += text.slice(at);
    expect(rebuilt).toBe('hi my number is <phone> and my email is <email>');
    expect(out).toBe('hi my number is [PHONE] and my email is [EMAIL]');
  });

  it('only replaces the categories asked for; others are neither replaced nor relabelled', () => {
    const text = 'card 4111111111111111 email jo@x.io phone 555-123-4567';
    expect(run(text, ['email']).text).toBe('card 4111111111111111 email [EMAIL] phone 555-123-4567');
    expect(run(text, ['spelled_digits']).text).toBe(text);
    expect(run(text, ['card', 'phone']).text).toBe('card [CARD] email jo@x.io phone [PHONE]');
    expect(run(text, []).text).toBe(text);
  });

  it('reads the preceding text for context without redacting it', () => {
    const asked = "what's your social security number?";
    const said = 'one two three four five six seven eight nine';
    expect(redactPii(said, { precedingText: asked }).text).toBe('[SSN]');
    expect(redactPii(said).text).toBe('[DIGITS]');
  });

  it('is idempotent: redacting redacted text changes nothing', () => {
    const texts = [
      'my card is 4111 1111 1111 1111 thanks',
      'four one one one one one one one one one one one one one one one, oh four two six, one two three',
      'call (555) 123-4567 or +1 555 123 4567 or five five five one two three four five six seven',
      'SSN 123-45-6789, email john dot smith at example dot com',
      'Oh, five five five one two three four five six seven, two people at 9 30',
      'plus four four two zero seven nine four six zero nine five eight',
      'account 12345678, pin four three two one',
    ];
    for (const text of texts) {
      const once = redacted(text);
      expect(once).not.toBe(text);
      expect(redactPii(once)).toEqual({ text: once, findings: [] });
    }
  });

  it('handles empty text and text without PII', () => {
    expect(redactPii('')).toEqual({ text: '', findings: [] });
    expect(redactPii('Thanks, have a nice day!')).toEqual({ text: 'Thanks, have a nice day!', findings: [] });
  });

  it('lists every category with a placeholder', () => {
    expect([...PII_CATEGORIES].sort()).toEqual(['card', 'email', 'phone', 'spelled_digits', 'ssn']);
  });
});

describe('caller turns as ASR writes them', () => {
  it('redacts a whole lower-case, unpunctuated caller turn', () => {
    const turn =
      'yeah hi so my card number is four five five five five five five five five five five five four four four seven ' +
      'and the expiry is oh four two seven and you can reach me on five five five two three four nine eight seven six';
    expect(run(turn)).toEqual({
      text: 'yeah hi so my card number is [CARD] and the expiry is [DIGITS] and you can reach me on [PHONE]',
      found: [
        'card:four five five five five five five five five five five five four four four seven',
        'spelled_digits:oh four two seven',
        'phone:five five five two three four nine eight seven six',
      ],
    });
  });

  it('redacts a punctuated turn from an ASR that writes numerals', () => {
    const turn =
      "Sure. It's 555-867-5309, and my email is Jenny.Lee@Example.com. Booking's for 2 people at 7:30 on the 14th, $45 deposit.";
    expect(redacted(turn)).toBe(
      "Sure. It's [PHONE], and my email is [EMAIL]. Booking's for 2 people at 7:30 on the 14th, $45 deposit.",
    );
  });

  it('redacts a transcript per turn, using the previous turn as context, and counts categories', () => {
    const turns = [
      { speaker: 'agent', text: 'Can I get your social security number to verify?', startMs: 0 },
      { speaker: 'caller', text: 'uh yeah one two three four five six seven eight nine', startMs: 3000 },
      { speaker: 'agent', text: 'Thanks. And a good callback number and email?', startMs: 6000 },
      { speaker: 'caller', text: 'five five five one two three four five six seven and john dot smith at example dot com', startMs: 9000 },
      { speaker: 'caller', text: 'also my old number was (555) 987-6543', startMs: 12000 },
      { speaker: 'agent', text: 'Great, we have a table for two at 9 30.', startMs: 15000 },
    ];
    const { turns: out, counts } = redactTranscript(turns);
    expect(out.map((t) => t.text)).toEqual([
      'Can I get your social security number to verify?',
      'uh yeah [SSN]',
      'Thanks. And a good callback number and email?',
      '[PHONE] and [EMAIL]',
      'also my old number was [PHONE]',
      'Great, we have a table for two at 9 30.',
    ]);
    expect(out.map((t) => [t.speaker, t.startMs])).toEqual(turns.map((t) => [t.speaker, t.startMs]));
    expect(counts).toEqual({ card: 0, ssn: 1, phone: 2, email: 1, spelled_digits: 0 });
    expect(turns[1]!.text).toBe('uh yeah one two three four five six seven eight nine');
  });
});
