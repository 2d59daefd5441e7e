import { z } from 'zod';
import { defineTool, defineToolType, type Tool } from '../define-tool.js';
import { evaluateArithmetic, MAX_EXPRESSION_LENGTH } from './arithmetic.js';

const input = z.object({
  expression: z
    .string()
    .max(MAX_EXPRESSION_LENGTH)
    .describe('An arithmetic expression, e.g. "(3 + 4) * 2^10 / sqrt(2)"'),
});

export interface CalculatorOutput {
  expression: string;
  result: number;
}

/**
 * The `calculator` tool: evaluates arithmetic with a real parser (never `eval`), so a model can
 * do exact sums instead of guessing them. A bad expression throws an `ArithmeticError` whose
 * message tells the model what to fix; the agent hands it back as the tool result.
 *
 * @example
 *   const calc = calculatorTool()
 *   await calc.run({ expression: '0.1 + 0.2' }, ctx) // { expression: '0.1 + 0.2', result: 0.3 }
 */
export function calculatorTool(name = 'calculator'): Tool<z.output<typeof input>, CalculatorOutput> {
  return defineTool({
    name,
    description:
      'Evaluates an arithmetic expression exactly. Supports + - * / % ^ (power), parentheses, unary minus, ' +
      'the constants pi and e, and sqrt, abs, round(x[, digits]), floor, ceil, min, max, log(x[, base]) (base 10 by default), ' +
      'ln, exp, sin, cos, tan (radians). Use it for any calculation instead of doing arithmetic yourself.',
    input,
    run({ expression }) {
      const value = evaluateArithmetic(expression);
      // 15 significant digits hide binary floating-point noise (0.1 + 0.2) without losing real precision.
      const result = Number(value.toPrecision(15)) + 0; // + 0 turns -0 into 0
      return { expression, result };
    },
  });
}

/** Lets the config say `calculator: {type: calculator}`. */
export const calculatorToolType = defineToolType({
  type: 'calculator',
  // No options: anything besides `type` is a typo the operator should hear about at boot.
  configSchema: z.object({ type: z.literal('calculator') }).strict(),
  create: (_config, name) => calculatorTool(name),
});
