// A Hugging Face Hub on 127.0.0.1 (port 0) with the API shapes @huggingface/hub calls, for tests.
// Downloads: model info, tree listing (paginated with a Link header), `resolve` (a 302 to a CDN
// path for LFS files, ETag / X-Repo-Commit / X-Linked-* headers, Range). Uploads: repo creation,
// preupload, the LFS batch API (basic PUT, or multipart with a completion call) and the ndjson
// commit. Failures as the real Hub gives them: 401 RepoNotFound for an unknown repo without a
// token, 404 with one, 401/403 GatedRepo, 404 RevisionNotFound / EntryNotFound, invalid tokens;
// and scripted faults: a connection cut after N bytes of a file, a server ignoring Range,
// corrupted bytes, error bodies echoing the Authorization header (to test redaction).
//
// Each test starts its own server and closes it; nothing leaves 127.0.0.1.

import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { seededBytes } from './temp-dir.js';

export interface MockRepoInit {
  id: string;
  /** Files of the first commit on `main`. */
  files: Record<string, Uint8Array | string>;
  private?: boolean;
  gated?: boolean;
  /** Tokens that may read a private or gated repo; default every valid token. */
  readers?: string[];
}

export interface MockHubOptions {
  repos?: MockRepoInit[];
  /** Valid tokens (read and write). */
  tokens?: string[];
  /** Valid tokens that may only read. */
  readOnlyTokens?: string[];
  /** Cut the connection after this many bytes of the next full transfers of a file (one entry per transfer). */
  cuts?: Array<{ path: string; afterBytes: number }>;
  /** Answer Range requests that do not start at 0 (resumes) with 200 and the whole file. */
  ignoreResumeRange?: boolean;
  /** Serve these files with their first byte flipped. */
  corrupt?: string[];
  /** Error bodies quote the request's Authorization header (a misbehaving proxy). */
  echoAuthorization?: boolean;
  /** Entries per page of the tree listing. */
  treePageSize?: number;
  /** LFS uploads of at least this size use the multipart protocol with this part size. */
  multipartChunkSize?: number;
}

export interface RecordedRequest {
  method: string;
  path: string;
  range?: string;
  authorized: boolean;
}

export interface MockCommit {
  oid: string;
  files: Map<string, Uint8Array>;
  title: string;
}

export interface MockRepo {
  id: string;
  private: boolean;
  gated: boolean;
  readers?: string[];
  refs: Map<string, string>;
  commits: Map<string, MockCommit>;
  createdWith?: { visibility?: string };
}

export interface MockHub {
  url: string;
  requests: RecordedRequest[];
  repos: Map<string, MockRepo>;
  /** Files of `repoId` at `revision` (default main). */
  filesAt(repoId: string, revision?: string): Map<string, Uint8Array>;
  addRepo(init: MockRepoInit): MockRepo;
  /** Adds a commit on main replacing some files; returns its oid. */
  commit(repoId: string, files: Record<string, Uint8Array | string>, title?: string): string;
  /** Number of data transfers (not 0-0 probes) of `path` served. */
  transfers(path: string): number;
  close(): Promise<void>;
}

/** Files the Hub stores in LFS (the rest are plain git blobs). */
export function isLfsPath(path: string, size: number): boolean {
  return /\.(safetensors|bin|pt|pth|h5|msgpack|onnx|gguf)$/.test(path) || size >= 10 * 1024 * 1024;
}

export function gitBlobOid(content: Uint8Array): string {
  return createHash('sha1').update(`blob ${content.length}\0`).update(content).digest('hex');
}

export function sha256Hex(content: Uint8Array): string {
  return createHash('sha256').update(content).digest('hex');
}

function bytes(v: Uint8Array | string): Uint8Array {
  return typeof v === 'string' ? new TextEncoder().encode(v) : v;
}

/** Bounded read of a request body (uploads in tests are small). */
const MAX_BODY_BYTES = 64 * 1024 * 1024;

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of req) {
    n += (chunk as Buffer).length;
    if (n > MAX_BODY_BYTES) throw new Error('mock hub: request body too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

export async function startMockHub(opts: MockHubOptions = {}): Promise<MockHub> {
  const tokens = new Set(opts.tokens ?? []);
  const readOnly = new Set(opts.readOnlyTokens ?? []);
  const repos = new Map<string, MockRepo>();
  const requests: RecordedRequest[] = [];
  const cuts = [...(opts.cuts ?? [])];
  const transfers = new Map<string, number>();
  const lfsStore = new Map<string, Uint8Array>(); // sha256 -> content
  const multipart = new Map<string, Map<number, Uint8Array>>();
  let commitCounter = 0;
  let url = '';

  const newCommitOid = (repoId: string, title: string): string => createHash('sha1').update(`${repoId}\0${title}\0${commitCounter++}`).digest('hex');

  const addCommit = (repo: MockRepo, files: Map<string, Uint8Array>, title: string): string => {
    const oid = newCommitOid(repo.id, title);
    repo.commits.set(oid, { oid, files, title });
    repo.refs.set('main', oid);
    for (const content of files.values()) lfsStore.set(sha256Hex(content), content);
    return oid;
  };

  const addRepo = (init: MockRepoInit): MockRepo => {
    const repo: MockRepo = {
      id: init.id,
      private: init.private ?? false,
      gated: init.gated ?? false,
      ...(init.readers ? { readers: init.readers } : {}),
      refs: new Map(),
      commits: new Map(),
    };
    repos.set(init.id, repo);
    const files = new Map(Object.entries(init.files).map(([k, v]) => [k, bytes(v)] as const));
    addCommit(repo, files, 'initial commit');
    return repo;
  };
  for (const r of opts.repos ?? []) addRepo(r);

  const resolveRev = (repo: MockRepo, rev: string): MockCommit | undefined => {
    const oid = rev === 'HEAD' ? repo.refs.get('main') : (repo.refs.get(rev) ?? rev);
    return oid !== undefined ? repo.commits.get(oid) : undefined;
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: `mock hub: ${(e as Error).message}` }));
      } else {
        res.destroy();
      }
    });
  });

  function tokenOf(req: IncomingMessage): string | undefined {
    const h = req.headers['authorization'];
    return h?.startsWith('Bearer ') ? h.slice(7) : undefined;
  }

  function fail(req: IncomingMessage, res: ServerResponse, status: number, message: string, errorCode?: string): void {
    const body: Record<string, string> = { error: message };
    if (opts.echoAuthorization && req.headers['authorization']) body['error'] += ` (you sent ${req.headers['authorization']})`;
    res.writeHead(status, {
      'content-type': 'application/json',
      ...(errorCode ? { 'x-error-code': errorCode } : {}),
      'x-request-id': `req-${requests.length}`,
    });
    res.end(JSON.stringify(body));
  }

  /** Access check; returns false after answering when access is denied. */
  function canRead(req: IncomingMessage, res: ServerResponse, repoId: string, forFile: boolean): MockRepo | undefined {
    const token = tokenOf(req);
    const valid = token !== undefined && (tokens.has(token) || readOnly.has(token));
    if (token !== undefined && !valid) {
      fail(req, res, 401, 'Invalid credentials in Authorization header');
      return undefined;
    }
    const repo = repos.get(repoId);
    const allowed = (r: MockRepo): boolean => valid && (r.readers === undefined || r.readers.includes(token!));
    if (repo === undefined || (repo.private && !allowed(repo))) {
      if (valid) fail(req, res, 404, 'Repository Not Found', 'RepoNotFound');
      else fail(req, res, 401, 'Repository Not Found', 'RepoNotFound');
      return undefined;
    }
    if (repo.gated && forFile && !allowed(repo)) {
      const msg = `Access to model ${repoId} is restricted. You must have access to it and be authenticated to access it. Please log in.`;
      fail(req, res, valid ? 403 : 401, msg, 'GatedRepo');
      return undefined;
    }
    return repo;
  }

  function canWrite(req: IncomingMessage, res: ServerResponse): boolean {
    const token = tokenOf(req);
    if (token === undefined || (!tokens.has(token) && !readOnly.has(token))) {
      fail(req, res, 401, 'Invalid username or password.');
      return false;
    }
    if (!tokens.has(token)) {
      fail(req, res, 403, 'You have read access but not the required permissions for this operation.');
      return false;
    }
    return true;
  }

  /** Serves `content` honouring Range, with scripted cuts / corruption. */
  function serveBytes(req: IncomingMessage, res: ServerResponse, path: string, content: Uint8Array, headers: Record<string, string>): void {
    let data = Buffer.from(content);
    if (opts.corrupt?.includes(path) && data.length > 0) {
      data = Buffer.from(data);
      data[0] = data[0]! ^ 0xff;
    }
    const total = data.length;
    let rangeHeader = req.headers['range'];
    if (opts.ignoreResumeRange && rangeHeader !== undefined && !rangeHeader.startsWith('bytes=0-')) rangeHeader = undefined;
    let start = 0;
    let end = total - 1;
    let status = 200;
    if (rangeHeader !== undefined) {
      const m = /^bytes=(\d+)-(\d*)$/.exec(rangeHeader);
      if (m === null) {
        fail(req, res, 416, 'bad range');
        return;
      }
      start = Number(m[1]);
      end = m[2] === '' ? total - 1 : Math.min(Number(m[2]), total - 1);
      if (start >= total) {
        res.writeHead(416, { 'content-range': `bytes */${total}` });
        res.end();
        return;
      }
      status = 206;
    }
    const isProbe = rangeHeader === 'bytes=0-0';
    const out = data.subarray(start, end + 1);
    const h: Record<string, string> = {
      ...headers,
      'accept-ranges': 'bytes',
      'content-type': 'application/octet-stream',
      'content-length': String(out.length),
      ...(status === 206 ? { 'content-range': `bytes ${start}-${end}/${total}` } : {}),
    };
    if (req.method === 'HEAD') {
      res.writeHead(status, h);
      res.end();
      return;
    }
    if (!isProbe) transfers.set(path, (transfers.get(path) ?? 0) + 1);
    const cutIndex = isProbe ? -1 : cuts.findIndex((c) => c.path === path);
    res.writeHead(status, h);
    if (cutIndex >= 0) {
      const cut = cuts.splice(cutIndex, 1)[0]!;
      res.write(out.subarray(0, cut.afterBytes), () => res.socket?.destroy());
      return;
    }
    res.end(out);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const u = new URL(req.url ?? '/', url);
    const parts = u.pathname.split('/').slice(1).map(decodeURIComponent);
    const method = req.method ?? 'GET';
    requests.push({
      method,
      path: u.pathname + u.search,
      ...(req.headers['range'] !== undefined ? { range: req.headers['range'] } : {}),
      authorized: req.headers['authorization'] !== undefined,
    });

    // GET /api/models/:org/:name[/revision/:rev]
    if (method === 'GET' && parts[0] === 'api' && parts[1] === 'models' && (parts.length === 4 || parts[4] === 'revision')) {
      const repoId = `${parts[2]}/${parts[3]}`;
      const repo = canRead(req, res, repoId, false);
      if (!repo) return;
      const rev = parts[5] ?? 'main';
      const c = resolveRev(repo, rev);
      if (!c) return fail(req, res, 404, `Invalid rev id: ${rev}`, 'RevisionNotFound');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          _id: `id-${repoId}`,
          id: repoId,
          private: repo.private,
          gated: repo.gated ? 'auto' : false,
          downloads: 0,
          likes: 0,
          lastModified: new Date(0).toISOString(),
          sha: c.oid,
          siblings: [...c.files.keys()].map((rfilename) => ({ rfilename })),
        }),
      );
      return;
    }

    // GET /api/models/:org/:name/tree/:rev[/:path]
    if (method === 'GET' && parts[0] === 'api' && parts[1] === 'models' && parts[4] === 'tree') {
      const repoId = `${parts[2]}/${parts[3]}`;
      const repo = canRead(req, res, repoId, false);
      if (!repo) return;
      const rev = parts[5] ?? 'main';
      const c = resolveRev(repo, rev);
      if (!c) return fail(req, res, 404, `Invalid rev id: ${rev}`, 'RevisionNotFound');
      const base = parts.slice(6).join('/');
      const recursive = u.searchParams.get('recursive') === 'true';
      const entries: Array<Record<string, unknown>> = [];
      const dirs = new Set<string>();
      for (const [path, content] of [...c.files].sort(([a], [b]) => a.localeCompare(b))) {
        if (base !== '' && !path.startsWith(`${base}/`)) continue;
        const rest = base === '' ? path : path.slice(base.length + 1);
        if (!recursive && rest.includes('/')) {
          const dir = (base === '' ? '' : `${base}/`) + rest.split('/')[0];
          if (!dirs.has(dir)) {
            dirs.add(dir);
            entries.push({ type: 'directory', oid: createHash('sha1').update(dir).digest('hex'), size: 0, path: dir });
          }
          continue;
        }
        const lfs = isLfsPath(path, content.length);
        entries.push({
          type: 'file',
          oid: lfs ? createHash('sha1').update(`pointer ${path}`).digest('hex') : gitBlobOid(content),
          size: content.length,
          path,
          ...(lfs ? { lfs: { oid: sha256Hex(content), size: content.length, pointerSize: 134 } } : {}),
        });
      }
      const pageSize = opts.treePageSize ?? 1000;
      const cursor = Number(u.searchParams.get('cursor') ?? '0');
      const page = entries.slice(cursor, cursor + pageSize);
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (cursor + pageSize < entries.length) {
        const next = new URL(u.href);
        next.searchParams.set('cursor', String(cursor + pageSize));
        headers['link'] = `<${next.href}>; rel="next"`;
      }
      res.writeHead(200, headers);
      res.end(JSON.stringify(page));
      return;
    }

    // GET|HEAD /:org/:name/resolve/:rev/:path
    if ((method === 'GET' || method === 'HEAD') && parts[2] === 'resolve' && parts.length >= 5) {
      const repoId = `${parts[0]}/${parts[1]}`;
      const repo = canRead(req, res, repoId, true);
      if (!repo) return;
      const rev = parts[3]!;
      const c = resolveRev(repo, rev);
      if (!c) return fail(req, res, 404, `Invalid rev id: ${rev}`, 'RevisionNotFound');
      const path = parts.slice(4).join('/');
      const content = c.files.get(path);
      if (!content) return fail(req, res, 404, 'Entry not found', 'EntryNotFound');
      if (isLfsPath(path, content.length)) {
        const sha = sha256Hex(content);
        res.writeHead(302, {
          location: `/cdn/${sha}?path=${encodeURIComponent(path)}&sig=mock`,
          'x-repo-commit': c.oid,
          'x-linked-etag': `"${sha}"`,
          'x-linked-size': String(content.length),
          etag: `W/"${sha.slice(0, 16)}"`,
        });
        res.end();
        return;
      }
      serveBytes(req, res, path, content, { etag: `"${gitBlobOid(content)}"`, 'x-repo-commit': c.oid });
      return;
    }

    // GET /cdn/:sha256 (the LFS storage a resolve redirects to)
    if ((method === 'GET' || method === 'HEAD') && parts[0] === 'cdn') {
      const content = lfsStore.get(parts[1]!);
      if (!content) return fail(req, res, 404, 'no such object');
      serveBytes(req, res, u.searchParams.get('path') ?? parts[1]!, content, { etag: `"${parts[1]}"` });
      return;
    }

    // POST /api/repos/create
    if (method === 'POST' && u.pathname === '/api/repos/create') {
      if (!canWrite(req, res)) return;
      const body = JSON.parse((await readBody(req)).toString('utf8')) as { name: string; organization: string; visibility?: string; type?: string };
      const repoId = `${body.organization}/${body.name}`;
      if (repos.has(repoId)) {
        res.writeHead(409, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'You already created this model repo', url: `${url}/${repoId}` }));
        return;
      }
      const repo = addRepo({ id: repoId, files: { '.gitattributes': '*.safetensors filter=lfs diff=lfs merge=lfs -text\n' }, private: body.visibility === 'private' });
      repo.createdWith = body.visibility !== undefined ? { visibility: body.visibility } : {};
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ url: `${url}/${repoId}`, name: repoId, id: `id-${repoId}` }));
      return;
    }

    // POST /api/models/:org/:name/preupload/:rev
    if (method === 'POST' && parts[0] === 'api' && parts[1] === 'models' && parts[4] === 'preupload') {
      if (!canWrite(req, res)) return;
      const repoId = `${parts[2]}/${parts[3]}`;
      if (!repos.has(repoId)) return fail(req, res, 404, 'Repository Not Found', 'RepoNotFound');
      const body = JSON.parse((await readBody(req)).toString('utf8')) as { files: Array<{ path: string; size: number }> };
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          files: body.files.map((f) => ({ path: f.path, uploadMode: isLfsPath(f.path, f.size) ? 'lfs' : 'regular', shouldIgnore: false })),
        }),
      );
      return;
    }

    // POST /:org/:name.git/info/lfs/objects/batch
    if (method === 'POST' && parts[1]?.endsWith('.git') && parts.slice(2).join('/') === 'info/lfs/objects/batch') {
      if (!canWrite(req, res)) return;
      const body = JSON.parse((await readBody(req)).toString('utf8')) as { objects: Array<{ oid: string; size: number }> };
      const chunk = opts.multipartChunkSize;
      const objects = body.objects.map((o) => {
        if (lfsStore.has(o.oid)) return { oid: o.oid, size: o.size };
        if (chunk !== undefined && o.size >= chunk) {
          const header: Record<string, string> = { chunk_size: String(chunk) };
          const n = Math.ceil(o.size / chunk);
          for (let i = 1; i <= n; i++) header[String(i).padStart(5, '0')] = `${url}/lfs-upload/${o.oid}/part/${i}`;
          return { oid: o.oid, size: o.size, authenticated: true, actions: { upload: { href: `${url}/lfs-upload/${o.oid}/complete`, header } } };
        }
        return { oid: o.oid, size: o.size, authenticated: true, actions: { upload: { href: `${url}/lfs-upload/${o.oid}` } } };
      });
      res.writeHead(200, { 'content-type': 'application/vnd.git-lfs+json' });
      res.end(JSON.stringify({ transfer: 'basic', objects }));
      return;
    }

    // PUT /lfs-upload/:oid, PUT /lfs-upload/:oid/part/:n, POST /lfs-upload/:oid/complete
    if (parts[0] === 'lfs-upload') {
      const oid = parts[1]!;
      if (method === 'PUT' && parts.length === 2) {
        const body = await readBody(req);
        if (sha256Hex(body) !== oid) return fail(req, res, 400, 'sha256 mismatch');
        lfsStore.set(oid, new Uint8Array(body));
        res.writeHead(200);
        res.end();
        return;
      }
      if (method === 'PUT' && parts[2] === 'part') {
        const body = await readBody(req);
        const parts_ = multipart.get(oid) ?? new Map<number, Uint8Array>();
        parts_.set(Number(parts[3]), new Uint8Array(body));
        multipart.set(oid, parts_);
        res.writeHead(200, { etag: `"part-${parts[3]}"` });
        res.end();
        return;
      }
      if (method === 'POST' && parts[2] === 'complete') {
        const body = JSON.parse((await readBody(req)).toString('utf8')) as { oid: string; parts: Array<{ partNumber: number; etag: string }> };
        const got = multipart.get(oid);
        if (!got || body.parts.some((p) => p.etag !== `"part-${p.partNumber}"`)) return fail(req, res, 400, 'bad parts');
        const all = Buffer.concat([...got.entries()].sort(([a], [b]) => a - b).map(([, v]) => v));
        if (sha256Hex(all) !== oid) return fail(req, res, 400, 'sha256 mismatch after multipart');
        lfsStore.set(oid, new Uint8Array(all));
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{}');
        return;
      }
    }

    // POST /api/models/:org/:name/commit/:rev
    if (method === 'POST' && parts[0] === 'api' && parts[1] === 'models' && parts[4] === 'commit') {
      if (!canWrite(req, res)) return;
      const repoId = `${parts[2]}/${parts[3]}`;
      const repo = repos.get(repoId);
      if (!repo) return fail(req, res, 404, 'Repository Not Found', 'RepoNotFound');
      const lines = (await readBody(req))
        .toString('utf8')
        .split('\n')
        .filter((l) => l.trim() !== '');
      const parent = repo.commits.get(repo.refs.get('main')!)!;
      const files = new Map(parent.files);
      let title = '';
      for (const line of lines) {
        const { key, value } = JSON.parse(line) as { key: string; value: Record<string, unknown> };
        if (key === 'header') title = String(value['summary']);
        else if (key === 'file') files.set(String(value['path']), new Uint8Array(Buffer.from(String(value['content']), 'base64')));
        else if (key === 'lfsFile') {
          const content = lfsStore.get(String(value['oid']));
          if (!content) return fail(req, res, 400, `LFS object ${String(value['oid'])} was not uploaded`);
          files.set(String(value['path']), content);
        } else if (key === 'deletedFile') files.delete(String(value['path']));
        else return fail(req, res, 400, `unknown key ${key}`);
      }
      const oid = addCommit(repo, files, title);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ success: true, commitOid: oid, commitUrl: `${url}/${repoId}/commit/${oid}`, hookOutput: '' }));
      return;
    }

    fail(req, res, 404, `mock hub: no route for ${method} ${u.pathname}`);
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    requests,
    repos,
    filesAt: (repoId, revision = 'main') => {
      const repo = repos.get(repoId);
      const c = repo ? resolveRev(repo, revision) : undefined;
      if (!c) throw new Error(`mock hub: no ${repoId}@${revision}`);
      return c.files;
    },
    addRepo,
    commit: (repoId, files, title = 'update') => {
      const repo = repos.get(repoId)!;
      const merged = new Map(repo.commits.get(repo.refs.get('main')!)!.files);
      for (const [k, v] of Object.entries(files)) merged.set(k, bytes(v));
      return addCommit(repo, merged, title);
    },
    transfers: (path) => transfers.get(path) ?? 0,
    close: () =>
      new Promise<void>((resolve, reject) => {
        if (!server.listening) return resolve(); // closed already: closing twice is fine
        server.closeAllConnections();
        server.close((e) => (e ? reject(e) : resolve()));
      }),
  };
}

/** safetensors bytes: 8-byte LE header length, JSON header (space-padded to 8 bytes), data. */
export function safetensorsBytes(tensors: Record<string, { dtype: string; shape: number[]; data: Uint8Array }>): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.length] };
    offset += t.data.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(new TextEncoder().encode(json), 8);
  let at = 8 + json.length;
  for (const t of Object.values(tensors)) {
    out.set(t.data, at);
    at += t.data.length;
  }
  return out;
}

/** Deterministic pseudo-random bytes (xorshift32), so a wrong resume offset shows in the hash. */
export function noiseBytes(n: number, seed = 1): Uint8Array {
  return seededBytes(n, seed);
}

/**
 * A tiny Llama-like model: config, one BF16 safetensors file (~256 KiB, several network chunks),
 * tokenizer and generation files, a README with a license, a `pytorch_model.bin` copy of the
 * weights and an `original/` folder that must never be downloaded.
 */
export function tinyModelFiles(): Record<string, Uint8Array | string> {
  const hidden = 128;
  const inter = 512;
  return {
    'config.json': JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: hidden, intermediate_size: inter, torch_dtype: 'bfloat16' }),
    'generation_config.json': JSON.stringify({ bos_token_id: 1, eos_token_id: 2 }),
    'tokenizer.json': JSON.stringify({ version: '1.0', model: { type: 'BPE', vocab: { a: 0, b: 1 } } }),
    'tokenizer_config.json': JSON.stringify({ chat_template: '{{ messages }}' }),
    'README.md': '---\nlicense: apache-2.0\npipeline_tag: text-generation\n---\n\n# tiny\n',
    'model.safetensors': safetensorsBytes({
      'model.layers.0.mlp.down_proj.weight': { dtype: 'BF16', shape: [hidden, inter], data: noiseBytes(hidden * inter * 2, 7) },
      'model.norm.weight': { dtype: 'BF16', shape: [hidden], data: noiseBytes(hidden * 2, 9) },
    }),
    'pytorch_model.bin': noiseBytes(4096, 3),
    'original/consolidated.00.pth': noiseBytes(2048, 5),
  };
}

/** Runs `fn` with a started mock Hub and a fresh temp folder; closes and removes both after. */
export async function withMockHub<T>(opts: MockHubOptions, fn: (hub: MockHub, tmp: string) => Promise<T>): Promise<T> {
  const { mkdtemp, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const hub = await startMockHub(opts);
  const tmp = await mkdtemp(join(tmpdir(), 'fp8q-hub-'));
  try {
    return await fn(hub, tmp);
  } finally {
    try {
      await hub.close();
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
}
