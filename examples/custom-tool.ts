/**
 * A tool of your own, given to a `tool_agent` workflow.
 *
 *   npx tsx examples/custom-tool.ts                                   # offline: lists the workflow, calls the tool once
 *   OPENAI_API_KEY=sk-… npx tsx examples/custom-tool.ts               # also asks the agent, which calls the tool
 *   OPENAI_BASE_URL=http://localhost:11434/v1 RUNWAY_MODEL=llama3.1 npx tsx examples/custom-tool.ts
 *
 * The model sees the tool's name, description and the JSON Schema of `input`; its arguments are
 * validated by that schema before `run` sees them (bad ones go back to the model as an error).
 */
import { z } from 'zod';
import { buildApp } from '../src/app.js';
import type { RunContext } from '../src/runtime/run-context.js';
import { defineTool } from '../src/workflows/define-tool.js';

export const wordCount = defineTool({
  name: 'word_count',
  description: 'Counts the words and characters of a text exactly.',
  input: z.object({ text: z.string().max(100_000).describe('The text to count') }),
  // `ctx` is the run's context: its signal (pass it to any I/O), user_id, logger, steps and tokens.
  run({ text }, ctx: RunContext) {
    ctx.log.debug({ chars: text.length }, 'counting words'); // lines carry the run's id
    const words = text.trim() === '' ? 0 : text.trim().split(/\s+/).length;
    return { words, characters: text.length };
  },
});

async function main(): Promise<void> {
  const env = process.env;
  const app = await buildApp({
    config: {
      server: { log_level: 'error' },
      llms: {
        default: {
          provider: 'openai',
          base_url: env.OPENAI_BASE_URL || 'https://api.openai.com/v1',
          api_key: env.OPENAI_API_KEY ?? '',
          model: env.RUNWAY_MODEL || 'gpt-4o-mini',
        },
      },
      workflows: {
        counter: { type: 'tool_agent', llm: 'default', tools: ['word_count'], max_iterations: 4 },
      },
    },
    registry: { tools: [wordCount] }, // ready-made tools, usable by name in any workflow's `tools`
  });

  const described = await app.inject({ method: 'GET', url: '/workflows/counter' });
  console.log(described.json());

  // What the model is shown of the tool: its arguments as JSON Schema.
  console.log(JSON.stringify(z.toJSONSchema(wordCount.input)));

  if (env.OPENAI_API_KEY || env.OPENAI_BASE_URL) {
    const res = await app.inject({
      method: 'POST',
      url: '/runs',
      payload: { workflow: 'counter', input: 'How many words are in "the quick brown fox jumps over the lazy dog"?' },
    });
    console.log(res.statusCode, res.json());
  } else {
    console.log('Set OPENAI_API_KEY (or OPENAI_BASE_URL) to let the agent call the tool.');
  }
  await app.close();
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
