// A small static file server for the built page, on the loopback interface only.
//
//   node dist/scripts/web-serve.js [--dir DIR] [--port N] [--model MODEL_DIR]
//
// --dir: the static folder (default dist/web). --port: first port to try (default 8080; the next
// free one is taken when it is busy; 0 = any). --model: also serve an exported model folder at
// /models/local/ and print the page's URL for it (?model=models/local/).

import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { AddressInfo } from 'node:net';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { usageOnHelp } from '../support/script-usage.js';

/** What a static host must send for the page to work; .wasm must be application/wasm for
 * WebAssembly.instantiateStreaming, and .mjs/.js a JavaScript type for module scripts and workers. */
export const MIME_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream',
  '.safetensors': 'application/octet-stream',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
};

/** Cross-origin isolation: with these on the page, the browser lets onnxruntime-web's wasm
 * backend run threads (SharedArrayBuffer); without them it runs on one. require-corp means every
 * resource from another origin must come with CORS (fetch's default) or a
 * Cross-Origin-Resource-Policy header. */
export const ISOLATION_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
});

export interface ServeOptions {
  /** The static folder. */
  root: string;
  /** Port to listen on; 0 picks a free one. Default 0. */
  port?: number;
  /** Try the next ports when the asked one is taken (default 0: fail). */
  portAttempts?: number;
  /** Extra folders served under URL prefixes, e.g. { '/models/local/': '/path/to/model' }. */
  mounts?: Record<string, string>;
  /** Send ISOLATION_HEADERS (default true); false serves the page as a plain static host does. */
  isolated?: boolean;
}

export interface StaticServer {
  /** http://127.0.0.1:PORT/ */
  url: string;
  port: number;
  server: Server;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-cache', ...headers });
  res.end(`${text}\n`);
}

/** The file a URL path names under `root`, or undefined when it escapes root. */
function within(root: string, urlPath: string): string | undefined {
  const path = resolve(root, `.${urlPath}`);
  return path === root || path.startsWith(root + sep) ? path : undefined;
}

function handler(root: string, mounts: [string, string][], isolated: boolean) {
  return (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, 'method not allowed', { Allow: 'GET, HEAD' });
      return;
    }
    let pathname: string;
    try {
      pathname = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
    } catch {
      send(res, 400, 'bad request');
      return;
    }
    if (pathname.includes('\0')) {
      send(res, 400, 'bad request');
      return;
    }
    const mount = mounts.find(([prefix]) => pathname.startsWith(prefix));
    const base = mount ? mount[1] : root;
    const rest = mount ? `/${pathname.slice(mount[0].length)}` : pathname;
    let file = within(base, rest);
    if (!file || !existsSync(file)) {
      send(res, 404, `not found: ${pathname}`);
      return;
    }
    let stat = statSync(file);
    if (stat.isDirectory()) {
      // Relative URLs in a page resolve against its folder: /web must become /web/.
      if (!pathname.endsWith('/')) {
        const url = new URL(req.url ?? '/', 'http://localhost');
        res.writeHead(301, { Location: `${url.pathname}/${url.search}` });
        res.end();
        return;
      }
      file = join(file, 'index.html');
      if (!existsSync(file)) {
        send(res, 404, `not found: ${pathname}index.html`);
        return;
      }
      stat = statSync(file);
    }
    res.writeHead(200, {
      'Content-Type': MIME_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
      'Content-Length': String(stat.size),
      'Cache-Control': 'no-cache',
      'X-Content-Type-Options': 'nosniff',
      ...(isolated ? ISOLATION_HEADERS : {}),
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    createReadStream(file).on('error', () => res.destroy()).pipe(res);
  };
}

function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const onError = (e: Error) => {
      server.off('listening', onListening);
      reject(e);
    };
    const onListening = () => {
      server.off('error', onError);
      resolvePort((server.address() as AddressInfo).port);
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, '127.0.0.1');
  });
}

export async function serveStatic(options: ServeOptions): Promise<StaticServer> {
  const root = resolve(options.root);
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new Error(`${root} is not a folder: build the page first (npm run build:web)`);
  const mounts = Object.entries(options.mounts ?? {}).map(([prefix, dir]): [string, string] => [prefix.endsWith('/') ? prefix : `${prefix}/`, resolve(dir)]);
  const server = createServer(handler(root, mounts, options.isolated ?? true));
  const first = options.port ?? 0;
  const attempts = first === 0 ? 1 : 1 + (options.portAttempts ?? 0);
  let port = -1;
  for (let i = 0; i < attempts; i++) {
    try {
      port = await listen(server, first === 0 ? 0 : first + i);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || i === attempts - 1) throw e;
    }
  }
  return {
    url: `http://127.0.0.1:${port}/`,
    port,
    server,
    close: () => new Promise<void>((done) => {
      server.closeAllConnections();
      server.close(() => done());
    }),
  };
}

function isMain(): boolean {
  return !!process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
}

function flag(args: string[], name: string): string | undefined {
  const at = args.indexOf(name);
  if (at < 0) return undefined;
  const value = args[at + 1];
  if (value === undefined || value.startsWith('--')) {
    console.error(`${name} needs a value`);
    process.exit(2);
  }
  return value;
}

if (isMain()) {
  usageOnHelp(import.meta.url);
  const args = process.argv.slice(2);
  const dir = flag(args, '--dir') ?? 'dist/web';
  const port = Number(flag(args, '--port') ?? 8080);
  const model = flag(args, '--model');
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`--port must be a port number, got ${port}`);
    process.exit(2);
  }
  if (model && !existsSync(join(model, 'glow.json'))) {
    console.error(`--model ${model} holds no glow.json: pass a folder written by glow-onnx export`);
    process.exit(2);
  }
  serveStatic({ root: dir, port, portAttempts: 20, mounts: model ? { '/models/local/': model } : {} })
    .then((s) => {
      console.log(`Serving ${dir} at ${s.url}`);
      if (model) console.log(`Your model ${model}: ${s.url}?model=models/local/`);
      console.log('Open it in a browser with WebGPU (Chrome/Edge 113+) or any browser for wasm; Ctrl+C stops.');
    })
    .catch((e) => {
      console.error(`cannot serve ${dir}: ${(e as Error).message}`);
      process.exit(1);
    });
}
