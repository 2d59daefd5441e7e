import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';

const ConversationParams = z.object({
  id: z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, 'must be 1-128 letters, digits or . _ : -'),
});

const ConversationJson = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    messages: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          role: { type: 'string', enum: ['system', 'user', 'assistant'] },
          content: { type: 'string' },
          run_id: { type: 'string' },
          created_at: { type: 'string' },
        },
        required: ['role', 'content', 'run_id', 'created_at'],
      },
    },
    created_at: { type: 'string' },
    updated_at: { type: 'string' },
  },
  required: ['id', 'messages', 'created_at', 'updated_at'],
} as const;

/**
 * `GET /conversations/:id` (the caller's conversation: its messages, oldest first) and
 * `DELETE /conversations/:id` (`204`). Another user's conversation is `404`, like an unknown one.
 */
export async function conversationRoutes(app: FastifyInstance): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const { runtime } = app;

  r.get('/conversations/:id', { schema: { params: ConversationParams, response: { 200: ConversationJson } } }, async (request) => {
    const conv = await runtime.session({ userId: request.userId }).conversation(request.params.id);
    return { id: conv.id, messages: conv.messages, created_at: conv.created_at, updated_at: conv.updated_at };
  });

  r.delete('/conversations/:id', { schema: { params: ConversationParams } }, async (request, reply) => {
    await runtime.session({ userId: request.userId }).deleteConversation(request.params.id);
    return reply.code(204).send();
  });
}
