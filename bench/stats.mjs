// Small statistics shared by the benchmarks.

export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * A 95% interval for the median of `xs`, by resampling the rounds (a bootstrap): how far the figure
 * could move on this machine with the same number of rounds. A fixed seed keeps it reproducible.
 */
export function medianInterval(xs, draws = 4000) {
  // mulberry32
  let state = 0x9e3779b9;
  const random = () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const medians = [];
  for (let d = 0; d < draws; d++) medians.push(median(xs.map(() => xs[Math.floor(random() * xs.length)])));
  medians.sort((a, b) => a - b);
  return [medians[Math.floor(draws * 0.025)], medians[Math.floor(draws * 0.975)]];
}

export const pct = (x) => `${(x * 100).toFixed(1)}%`;
