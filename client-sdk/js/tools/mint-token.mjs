// Prints a development token (HS256 with heraldd's public development secret) and the
// demo page URL that uses it. Usage: node mint-token.mjs USER [TTL_S] [DEMO_ORIGIN]
// Never use the development secret in production (docs/configuration.md, auth.jwt_secret).
import { createHmac } from 'node:crypto';

const [user, ttl = '86400', origin = 'http://127.0.0.1:7690'] = process.argv.slice(2);
if (!user) {
  console.error('usage: node mint-token.mjs USER [TTL_S] [DEMO_ORIGIN]');
  process.exit(2);
}
const secret = process.env.HERALD_JWT_SECRET ?? 'herald-dev-secret';
const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const body = `${enc({ alg: 'HS256', typ: 'JWT' })}.${enc({ sub: user, exp: Math.floor(Date.now() / 1000) + Number(ttl) })}`;
const token = `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
console.log(token);
console.log(`${origin}/#token=${token}`);
