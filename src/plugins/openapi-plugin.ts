import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import fp from 'fastify-plugin';
import { PROBLEM_SCHEMA_ID, ProblemComponent, transformRoute } from '../http/openapi-transform.js';
import { RUNWAY_VERSION } from '../version.js';

const DESCRIPTION =
  'Runway serves AI-agent runs over HTTP and Server-Sent Events. Errors are `application/problem+json` ' +
  '(RFC 9457) with a stable `code`; the OpenAI-compatible routes under `/v1` answer errors in OpenAI\'s shape. ' +
  'Without `RUNWAY_API_KEYS` (development) the caller is `X-User-Id` or `anonymous`; with it, every route but ' +
  'the operations and documentation ones needs `Authorization: Bearer <key>`.';

/**
 * `GET /openapi.json` (OpenAPI 3.1) and Swagger UI at `GET /docs`, both public. The document is
 * generated from the routes as they are registered, so this plugin must be registered before them:
 * request schemas are the zod schemas that validate requests, responses the JSON Schemas that
 * serialize them (see openapi-transform). Nothing here runs per request except on these routes.
 */
export const openapiPlugin = fp(
  async (app) => {
    // The shared response schemas (`Run`…) become components named by their `$id`.
    app.addSchema({ $id: PROBLEM_SCHEMA_ID, ...ProblemComponent });
    await app.register(fastifySwagger, {
      openapi: {
        openapi: '3.1.0',
        info: { title: 'Runway', version: RUNWAY_VERSION, description: DESCRIPTION },
        components: {
          securitySchemes: {
            bearerAuth: { type: 'http', scheme: 'bearer', description: 'An API key of `RUNWAY_API_KEYS` (when auth is on)' },
          },
        },
        tags: [
          { name: 'runs', description: 'Create, follow, cancel and list runs' },
          { name: 'workflows', description: 'What can be run' },
          { name: 'conversations', description: 'Messages kept per (user, conversation id)' },
          { name: 'openai', description: 'OpenAI-compatible facade: model = workflow' },
          { name: 'operations', description: 'Health, readiness, metrics' },
        ],
      },
      refResolver: {
        buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`),
      },
      transform: transformRoute,
    });

    // Documentation routes are public (identity-plugin) and left out of the document itself.
    app.get('/openapi.json', { config: { public: true }, schema: { hide: true } }, async () => app.swagger());
    // Swagger UI serves the same document at /docs/json.
    await app.register(fastifySwaggerUi, { routePrefix: '/docs', uiConfig: { deepLinking: true } });
  },
  { name: 'runway-openapi', fastify: '5.x' },
);
