import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Workflow } from '../src/workflows/workflow.js';
import { WorkflowJson, WorkflowParams } from './schemas.js';

function describe(wf: Workflow, cache: Map<string, object>) {
  let input_schema = cache.get(wf.name);
  if (!input_schema) {
    input_schema = z.toJSONSchema(wf.inputSchema, { unrepresentable: 'any', io: 'input' }) as object;
    cache.set(wf.name, input_schema);
  }
  return { name: wf.name, description: wf.description, type: wf.type, input_schema };
}

export async function workflowRoutes(app: FastifyInstance): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { runtime } = app;
  const schemas = new Map<string, object>();

  r.get(
    '/workflows',
    { schema: { response: { 200: { type: 'object', properties: { data: { type: 'array', items: WorkflowJson } }, required: ['data'] } } } },
    async () => ({ data: [...runtime.workflows.values()].map((wf) => describe(wf, schemas)) }),
  );

  r.get('/workflows/:name', { schema: { params: WorkflowParams, response: { 200: WorkflowJson } } }, async (request) =>
    describe(runtime.workflow(request.params.name), schemas),
  );
}
