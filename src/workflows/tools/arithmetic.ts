/**
 * A small arithmetic language, parsed by recursive descent and evaluated as it parses. It exists so
 * that a model's `expression` never reaches `eval` or `Function`: only the grammar below can run.
 *
 *   expression := term (('+' | '-') term)*
 *   term       := unary (('*' | '/' | '%') unary)*
 *   unary      := ('-' | '+') unary | power
 *   power      := primary ('^' unary)?                 right-associative: 2^3^2 = 2^9
 *   primary    := number | constant | name '(' args ')' | '(' expression ')'
 *
 * Unary minus binds looser than `^`, so `-2^2` is -4 (the usual maths convention) and `2^-1` is 0.5.
 * `×`, `÷`, `−` and `**` are accepted as spellings of `*`, `/`, `-` and `^`. Trigonometry is in radians;
 * `log(x)` is base 10, `log(x, b)` base b, `ln(x)` natural. `%` is the remainder, with the sign of
 * the dividend (`-7 % 3` is -1).
 *
 * @example
 *   evaluateArithmetic('2 * (3 + 4)')    // 14
 *   evaluateArithmetic('sqrt(16) + 2^10') // 1028
 *   evaluateArithmetic('1 / 0')          // throws ArithmeticError('Division by zero')
 */
export function evaluateArithmetic(expression: string): number {
  if (expression.length > MAX_EXPRESSION_LENGTH) {
    throw new ArithmeticError(`Expression is longer than ${MAX_EXPRESSION_LENGTH} characters`);
  }
  return new Parser(tokenize(expression)).parseAll();
}

/** Why an expression could not be evaluated; the message is meant for the model to read and fix. */
export class ArithmeticError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArithmeticError';
  }
}

export const MAX_EXPRESSION_LENGTH = 500;
/** Bounds recursion, so a hostile `((((…` cannot exhaust the stack. */
export const MAX_NESTING_DEPTH = 50;

type Token =
  | { kind: 'number'; value: number; at: number }
  | { kind: 'name'; name: string; at: number }
  | { kind: 'op'; op: '+' | '-' | '*' | '/' | '%' | '^' | '(' | ')' | ','; at: number }
  | { kind: 'end'; at: number };

const OPERATOR_SPELLINGS: Record<string, Extract<Token, { kind: 'op' }>['op']> = {
  '+': '+',
  '-': '-',
  '−': '-',
  '*': '*',
  '×': '*',
  '/': '/',
  '÷': '/',
  '%': '%',
  '^': '^',
  '(': '(',
  ')': ')',
  ',': ',',
};

function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < source.length) {
    const ch = source[i]!;
    if (/\s/.test(ch)) {
      i++;
      continue;
    }
    const number = /^(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/.exec(source.slice(i));
    if (number !== null) {
      const value = Number(number[0]);
      if (!Number.isFinite(value)) throw new ArithmeticError(`Number ${number[0]} at position ${i + 1} is too large`);
      tokens.push({ kind: 'number', value, at: i });
      i += number[0].length;
      continue;
    }
    const name = /^[A-Za-z_][A-Za-z0-9_]*/.exec(source.slice(i));
    if (name !== null) {
      tokens.push({ kind: 'name', name: name[0], at: i });
      i += name[0].length;
      continue;
    }
    if (source.startsWith('**', i)) {
      tokens.push({ kind: 'op', op: '^', at: i });
      i += 2;
      continue;
    }
    const op = OPERATOR_SPELLINGS[ch];
    if (op === undefined || !Object.hasOwn(OPERATOR_SPELLINGS, ch)) {
      throw new ArithmeticError(`Unexpected character '${ch}' at position ${i + 1}`);
    }
    tokens.push({ kind: 'op', op, at: i });
    i++;
  }
  tokens.push({ kind: 'end', at: source.length });
  return tokens;
}

interface FunctionDef {
  minArgs: number;
  maxArgs: number;
  apply(args: number[]): number;
}

// Maps, not object literals: a name like `constructor` or `__proto__` must find nothing.
const CONSTANTS = new Map<string, number>([
  ['pi', Math.PI],
  ['e', Math.E],
]);

const FUNCTIONS = new Map<string, FunctionDef>([
  ['sqrt', unary((x) => requireDomain(x >= 0, 'sqrt of a negative number', Math.sqrt(x)))],
  ['abs', unary(Math.abs)],
  ['floor', unary(Math.floor)],
  ['ceil', unary(Math.ceil)],
  ['exp', unary(Math.exp)],
  ['sin', unary(Math.sin)],
  ['cos', unary(Math.cos)],
  ['tan', unary(Math.tan)],
  ['ln', unary((x) => requireDomain(x > 0, 'ln of a number that is not positive', Math.log(x)))],
  ['min', { minArgs: 1, maxArgs: Infinity, apply: (args) => Math.min(...args) }],
  ['max', { minArgs: 1, maxArgs: Infinity, apply: (args) => Math.max(...args) }],
  [
    'log',
    {
      minArgs: 1,
      maxArgs: 2,
      apply: ([x = NaN, base = 10]) => {
        requireDomain(x > 0, 'log of a number that is not positive', 0);
        requireDomain(base > 0 && base !== 1, 'log base must be positive and not 1', 0);
        return base === 10 ? Math.log10(x) : Math.log(x) / Math.log(base);
      },
    },
  ],
  [
    'round',
    {
      minArgs: 1,
      maxArgs: 2,
      apply: ([x = NaN, digits = 0]) => {
        requireDomain(Number.isInteger(digits) && digits >= 0 && digits <= 15, 'round digits must be an integer 0–15', 0);
        const scale = 10 ** digits;
        // Math.round rounds -2.5 to -2; round half away from zero, as people expect.
        return (Math.sign(x) * Math.round(Math.abs(x) * scale)) / scale;
      },
    },
  ],
]);

function unary(fn: (x: number) => number): FunctionDef {
  return { minArgs: 1, maxArgs: 1, apply: ([x = NaN]) => fn(x) };
}

function requireDomain(ok: boolean, message: string, value: number): number {
  if (!ok) throw new ArithmeticError(`Undefined: ${message}`);
  return value;
}

class Parser {
  private pos = 0;
  private depth = 0;

  constructor(private readonly tokens: Token[]) {}

  parseAll(): number {
    const value = this.expression();
    const next = this.peek();
    if (next.kind !== 'end') throw new ArithmeticError(`Unexpected ${describe(next)} at position ${next.at + 1}`);
    return value;
  }

  private expression(): number {
    return this.nested(() => {
      let value = this.term();
      for (let op = this.peekOp(); op === '+' || op === '-'; op = this.peekOp()) {
        this.pos++;
        const right = this.term();
        value = checked(op === '+' ? value + right : value - right);
      }
      return value;
    });
  }

  private term(): number {
    let value = this.unary();
    for (let op = this.peekOp(); op === '*' || op === '/' || op === '%'; op = this.peekOp()) {
      this.pos++;
      const right = this.unary();
      if ((op === '/' || op === '%') && right === 0) {
        throw new ArithmeticError(op === '/' ? 'Division by zero' : 'Modulo by zero');
      }
      value = checked(op === '*' ? value * right : op === '/' ? value / right : value % right);
    }
    return value;
  }

  private unary(): number {
    const op = this.peekOp();
    if (op === '-' || op === '+') {
      this.pos++;
      return this.nested(() => {
        const value = this.unary();
        return op === '-' ? -value : value;
      });
    }
    return this.power();
  }

  private power(): number {
    const base = this.primary();
    if (this.peekOp() !== '^') return base;
    this.pos++;
    // Recursing into unary (not primary) makes ^ right-associative and allows 2^-1.
    const exponent = this.nested(() => this.unary());
    if (base === 0 && exponent < 0) throw new ArithmeticError('Division by zero');
    return checked(base ** exponent);
  }

  private primary(): number {
    const token = this.next();
    if (token.kind === 'number') return token.value;
    if (token.kind === 'op' && token.op === '(') {
      const value = this.expression();
      this.expectOp(')', token.at);
      return value;
    }
    if (token.kind === 'name') return this.nameValue(token);
    throw new ArithmeticError(
      token.kind === 'end' ? 'Expression ended unexpectedly' : `Unexpected ${describe(token)} at position ${token.at + 1}`,
    );
  }

  private nameValue(token: Extract<Token, { kind: 'name' }>): number {
    const key = token.name.toLowerCase();
    const fn = FUNCTIONS.get(key);
    if (fn !== undefined && this.peekOp() === '(') {
      const open = this.next();
      const args = this.arguments(open.at);
      if (args.length < fn.minArgs || args.length > fn.maxArgs) {
        const expected = fn.maxArgs === Infinity ? `at least ${fn.minArgs}` : fn.minArgs === fn.maxArgs ? `${fn.minArgs}` : `${fn.minArgs}–${fn.maxArgs}`;
        throw new ArithmeticError(`${key}() takes ${expected} argument(s), got ${args.length}`);
      }
      return checked(fn.apply(args));
    }
    if (fn !== undefined) throw new ArithmeticError(`${key} is a function: write ${key}(…)`);
    const constant = CONSTANTS.get(key);
    if (constant !== undefined) return constant;
    throw new ArithmeticError(
      `Unknown name '${token.name}' at position ${token.at + 1}; known: ${[...CONSTANTS.keys(), ...FUNCTIONS.keys()].join(', ')}`,
    );
  }

  private arguments(openAt: number): number[] {
    return this.nested(() => {
      const args: number[] = [];
      if (this.peekOp() === ')') {
        this.pos++;
        return args;
      }
      for (;;) {
        args.push(this.expression());
        if (this.peekOp() !== ',') break;
        this.pos++;
      }
      this.expectOp(')', openAt);
      return args;
    });
  }

  /** Every recursive production goes through here, so depth counts every way to nest. */
  private nested<T>(parse: () => T): T {
    if (++this.depth > MAX_NESTING_DEPTH) {
      throw new ArithmeticError(`Expression is nested more than ${MAX_NESTING_DEPTH} levels deep`);
    }
    try {
      return parse();
    } finally {
      this.depth--;
    }
  }

  private expectOp(op: ')', openedAt: number): void {
    const token = this.next();
    if (token.kind !== 'op' || token.op !== op) {
      throw new ArithmeticError(`Missing ')' for the '(' at position ${openedAt + 1}`);
    }
  }

  private peek(): Token {
    return this.tokens[this.pos]!;
  }

  private peekOp(): string | undefined {
    const token = this.peek();
    return token.kind === 'op' ? token.op : undefined;
  }

  private next(): Token {
    const token = this.tokens[this.pos]!;
    if (token.kind !== 'end') this.pos++;
    return token;
  }
}

function checked(value: number): number {
  if (Number.isNaN(value)) throw new ArithmeticError('The result is undefined (not a number)');
  if (!Number.isFinite(value)) throw new ArithmeticError('The result is too large (overflow)');
  return value;
}

function describe(token: Token): string {
  switch (token.kind) {
    case 'number':
      return `number ${token.value}`;
    case 'name':
      return `name '${token.name}'`;
    case 'op':
      return `'${token.op}'`;
    case 'end':
      return 'end of expression';
  }
}
