import { randomUUID } from 'node:crypto';
import { maxHeaderSize, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { ConnectionError, FastifyHttpOptions, FastifyInstance, FastifyRequest } from 'fastify';
import type { Config } from './config.js';
import { badRequest, HttpProblem, rawProblemAnswer } from './errors.js';

const notImplemented = (detail: string) => new HttpProblem(501, 'not-implemented', 'Not Implemented', detail);

/** What Node's HTTP parser or its timeouts reject: the problem to answer on the raw socket. */
function clientProblem(err: ConnectionError & { reason?: string }, config: Config): HttpProblem {
  switch (err.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new HttpProblem(408, 'request-timeout', 'Request Timeout',
        `The request did not arrive in time: its headers are due within ${config.HEADERS_TIMEOUT_MS} ms, ` +
        `the whole request within ${config.REQUEST_BODY_TIMEOUT_MS} ms.`);
    case 'HPE_HEADER_OVERFLOW':
      return new HttpProblem(431, 'header-fields-too-large', 'Request Header Fields Too Large',
        `The request headers exceed ${maxHeaderSize} bytes.`);
    case 'HPE_INVALID_METHOD':
      return notImplemented('The request method is not one this server implements.');
    default:
      return new HttpProblem(400, 'malformed-request', 'Bad Request',
        `The request is not valid HTTP/1.1: ${err.reason ?? err.message}.`);
  }
}

/** Sends a raw answer, then closes once it is flushed (a close with unread input could reset it away). */
function answerAndClose(socket: Socket, p: HttpProblem, instance: string) {
  socket.end(rawProblemAnswer(p, instance), () => socket.destroy());
}

/**
 * Node's HTTP server as this service needs it. Node enforces headersTimeout and requestTimeout
 * (until the request has arrived; a handler may take longer) only when it checks its connections,
 * every 30 s by default: here four times within the headers timeout, and at least every second.
 * requestTimeout goes to fastify too, which sets it on the server after creating it.
 */
export function httpServerOptions(config: Config): FastifyHttpOptions<Server> {
  return {
    requestTimeout: config.REQUEST_BODY_TIMEOUT_MS,
    http: {
      headersTimeout: config.HEADERS_TIMEOUT_MS,
      requestTimeout: config.REQUEST_BODY_TIMEOUT_MS,
      connectionsCheckingInterval: Math.min(1000, Math.ceil(config.HEADERS_TIMEOUT_MS / 4)),
      // Node answers a missing Host with a bare 400; requestLineProblem answers a problem.
      requireHostHeader: false,
    },
    // Parser errors, timeouts, oversized headers and unknown methods never become requests.
    clientErrorHandler(this: FastifyInstance, err: ConnectionError, socket: Socket) {
      if (err.code === 'ECONNRESET' || socket.destroyed) return; // nobody left to answer
      const instance = randomUUID();
      const problem = clientProblem(err, config);
      // Never the error itself: its rawPacket holds the request's bytes, Authorization included.
      this.log.info({ instance, code: err.code, status: problem.status }, 'client error answered');
      // As Node's own handler: answer only if no response has started on this connection.
      const current = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage;
      if (socket.writable && !current?.headersSent) answerAndClose(socket, problem, instance);
      else socket.destroy();
    },
  };
}

/** CONNECT (a proxy tunnel) leaves the HTTP parser, so it is answered here; it is not served. */
export function answerConnect(app: FastifyInstance) {
  app.server.on('connect', (_req: IncomingMessage, socket: Socket) => {
    socket.on('error', () => {}); // a reset now needs no answer, and must not crash the process
    const instance = randomUUID();
    app.log.info({ instance, method: 'CONNECT', status: 501 }, 'client error answered');
    answerAndClose(socket, notImplemented('CONNECT is not served: this is not a proxy.'), instance);
  });
}

/** The first query parameter whose percent-encoding is invalid (a bad escape, or not UTF-8). */
function badlyEncodedQuery(query: string): string | undefined {
  if (!query.includes('%')) return undefined;
  const decode = (s: string) => decodeURIComponent(s.replaceAll('+', ' '));
  for (const pair of query.split('&')) {
    try {
      decode(pair);
    } catch {
      const key = pair.split('=', 1)[0]!;
      try {
        return `query.${decode(key)}`;
      } catch {
        return 'query';
      }
    }
  }
  return undefined;
}

/**
 * What Node and the router let through but a request must not be: a query with invalid
 * percent-encoding (the query parser would silently replace it with U+FFFD) and an HTTP/1.1
 * request without Host (RFC 9112 §3.2) are 400 problems. A path's encoding is the router's
 * check (FST_ERR_BAD_URL, answered by frameworkErrors). A query parser cannot refuse instead:
 * fastify calls it inside the router, where a throw escapes as an uncaught exception.
 */
export function requestLineProblem(req: FastifyRequest): HttpProblem | undefined {
  if (req.raw.httpVersion === '1.1' && req.headers.host === undefined) {
    return badRequest('An HTTP/1.1 request must carry a Host header.', [{ path: 'headers.host', message: 'required' }]);
  }
  const q = req.url.indexOf('?');
  const bad = q === -1 ? undefined : badlyEncodedQuery(req.url.slice(q + 1));
  return bad === undefined ? undefined
    : badRequest(`Invalid query: ${bad} is not valid percent-encoded UTF-8.`, [{ path: bad, message: 'invalid percent-encoding' }]);
}
