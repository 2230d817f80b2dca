/**
 * The read API's OpenAPI 3 document, built by @fastify/swagger from the routes' schemas, with
 * Swagger UI at `/docs` and the document itself at `/docs/json` (and `/docs/yaml`).
 *
 * Await `registerApiDocs` BEFORE registering the routes: @fastify/swagger learns routes from an
 * `onRoute` hook, so a route added before it is missing from the document. Only `/v1/` routes are
 * documented (webhooks, health and the media socket are not part of this API). The docs are not
 * behind an API key: they describe the API's shape, no data.
 */
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';

export const DOCS_PREFIX = '/docs';
const DOCUMENTED_PREFIX = '/v1/';

export async function registerApiDocs(app: FastifyInstance): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Voice agent analysts API',
        version: '1',
        description:
          'Calls with their redacted transcripts, turn latencies, post-call analysis and recording metadata ' +
          '(roles analyst and admin), and the numbers\' agent profiles (role admin). ' +
          'Every request needs `Authorization: Bearer <key>`, with a key from the server\'s API_KEYS.',
      },
      tags: [
        { name: 'calls', description: 'Calls, for analysts and admins' },
        { name: 'numbers', description: "Our numbers' agent profiles, for admins" },
      ],
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', description: 'A key from API_KEYS (key:role)' },
        },
      },
    },
    transform: ({ schema, url }) => ({
      url,
      schema: url.startsWith(DOCUMENTED_PREFIX) ? schema : { ...schema, hide: true },
    }),
  });
  await app.register(swaggerUi, { routePrefix: DOCS_PREFIX });
}
