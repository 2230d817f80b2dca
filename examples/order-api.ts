/**
 * A stand-in order-status API for `order-status-agent.json`, so the example's `lookup_order` tool has
 * something to call: `ORDER_API_KEY=dev-key npx tsx examples/order-api.ts` (port 8788, or PORT).
 * GET /orders/status?order_number=10042 with `X-Api-Key` → JSON; unknown orders → 404.
 */
import { createServer } from 'node:http';

const ORDERS: Record<string, { status: string; carrier: string; expected_delivery: string }> = {
  '10042': { status: 'shipped', carrier: 'UPS', expected_delivery: '2025-06-12' },
  '10043': { status: 'processing', carrier: 'not yet assigned', expected_delivery: '2025-06-16' },
  '10044': { status: 'delivered', carrier: 'USPS', expected_delivery: '2025-06-02' },
};

const apiKey = process.env['ORDER_API_KEY'];
const port = Number(process.env['PORT'] ?? 8788);

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const reply = (status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };
  if (apiKey !== undefined && req.headers['x-api-key'] !== apiKey) return reply(401, { error: 'bad API key' });
  if (req.method !== 'GET' || url.pathname !== '/orders/status') return reply(404, { error: 'no such endpoint' });
  const number = (url.searchParams.get('order_number') ?? '').replace(/\D/g, '');
  const order = ORDERS[number];
  if (order === undefined) return reply(404, { error: `order ${number} not found` });
  reply(200, { order_number: number, ...order });
});

server.listen(port, '127.0.0.1', () => console.log(`order API on http://127.0.0.1:${port}/orders/status`));
