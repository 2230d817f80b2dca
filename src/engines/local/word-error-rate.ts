/**
 * Word error rate: word-level Levenshtein distance between a reference transcript and a recognizer's
 * hypothesis, divided by the number of reference words. Case- and punctuation-insensitive.
 */

export interface WordErrorRate {
  /** (substitutions + deletions + insertions) / referenceWords; an empty reference counts as one word. */
  rate: number;
  errors: number;
  substitutions: number;
  deletions: number;
  insertions: number;
  referenceWords: number;
  hypothesisWords: number;
}

/** Lower-cases and splits into words; punctuation separates words, apostrophes inside words stay ("don't"). */
export function normalizeWords(text: string): string[] {
  return text
    .toLowerCase()
    .replace(/[^\p{L}\p{N}']+/gu, ' ')
    .split(' ')
    .map((word) => word.replace(/^'+|'+$/g, ''))
    .filter((word) => word.length > 0);
}

export function wordErrorRate(reference: string, hypothesis: string): WordErrorRate {
  const ref = normalizeWords(reference);
  const hyp = normalizeWords(hypothesis);
  const n = ref.length;
  const m = hyp.length;
  const width = m + 1;
  // cost[i][j] = edit distance between ref[0..i) and hyp[0..j)
  const cost = new Uint32Array((n + 1) * width);
  for (let j = 0; j <= m; j++) cost[j] = j;
  for (let i = 1; i <= n; i++) {
    cost[i * width] = i;
    for (let j = 1; j <= m; j++) {
      const diagonal = cost[(i - 1) * width + j - 1]! + (ref[i - 1] === hyp[j - 1] ? 0 : 1);
      const deletion = cost[(i - 1) * width + j]! + 1;
      const insertion = cost[i * width + j - 1]! + 1;
      cost[i * width + j] = Math.min(diagonal, deletion, insertion);
    }
  }
  // Walk back along one optimal alignment to split the distance into its kinds.
  let substitutions = 0;
  let deletions = 0;
  let insertions = 0;
  let i = n;
  let j = m;
  while (i > 0 || j > 0) {
    const here = cost[i * width + j]!;
    if (i > 0 && j > 0) {
      const same = ref[i - 1] === hyp[j - 1];
      if (here === cost[(i - 1) * width + j - 1]! + (same ? 0 : 1)) {
        if (!same) substitutions++;
        i--;
        j--;
        continue;
      }
    }
    if (i > 0 && here === cost[(i - 1) * width + j]! + 1) {
      deletions++;
      i--;
    } else {
      insertions++;
      j--;
    }
  }
  const errors = substitutions + deletions + insertions;
  return {
    rate: errors / Math.max(1, n),
    errors,
    substitutions,
    deletions,
    insertions,
    referenceWords: n,
    hypothesisWords: m,
  };
}
