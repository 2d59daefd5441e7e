export function median(xs: readonly number[]): number;
export function medianInterval(xs: readonly number[], draws?: number): [number, number];
export function pct(x: number): string;
