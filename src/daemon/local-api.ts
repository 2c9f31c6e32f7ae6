import { createConnection, createServer, type Server, type Socket } from 'node:net'
import { unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'

/**
 * The CLI talks to the daemon of its home over a Unix socket, <home>/daemon.sock
 * (the home is 0700, so only its owner reaches it). One request per connection, one
 * JSON document per line each way.
 */
export const SOCKET_NAME = 'daemon.sock'
export const socketPath = (home: string): string => join(home, SOCKET_NAME)

export type LocalRequest =
  | { type: 'status' }
  | { type: 'peers' }
  | { type: 'sync', task: unknown }
  | { type: 'remote-sync', from: string, task: unknown }

export type LocalResponse =
  | { type: 'status', peerId: string, addrs: string[] }
  | { type: 'peers', peers: unknown[] }
  | { type: 'event', event: unknown }
  | { type: 'report', report: unknown }
  | { type: 'error', code: string, message: string }

/** `gone`: aborted when the client closes the connection before the handler is done (it pressed Ctrl-C, or died) */
export type LocalHandler = (req: LocalRequest, send: (r: LocalResponse) => void, gone: AbortSignal) => Promise<void>

export async function serveLocalApi (home: string, handler: LocalHandler): Promise<Server> {
  const path = socketPath(home)
  // a socket file left by a daemon that died: replace it, but never steal a live one
  if (await connectLocal(home).then(s => { s.destroy(); return true }, () => false)) {
    throw new Error(`a daemon is already running in ${home}`)
  }
  await unlink(path).catch(() => {})
  const server = createServer((sock: Socket) => {
    const send = (r: LocalResponse): void => { if (!sock.destroyed) sock.write(JSON.stringify(r) + '\n') }
    const gone = new AbortController()
    sock.once('close', () => { gone.abort(new Error('the client went away')) })
    const rl = createInterface({ input: sock })
    rl.once('line', (line) => {
      let req: LocalRequest
      try { req = JSON.parse(line) } catch { send({ type: 'error', code: 'usage', message: 'bad request' }); sock.end(); return }
      handler(req, send, gone.signal).catch((err) => { send({ type: 'error', code: 'failed', message: (err as Error).message }) }).finally(() => { sock.end() })
    })
    sock.on('error', () => {})
  })
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(path, () => { resolve() }) })
  return server
}

export async function connectLocal (home: string): Promise<Socket> {
  return await new Promise((resolve, reject) => {
    const s = createConnection(socketPath(home))
    s.once('connect', () => { resolve(s) })
    s.once('error', reject)
  })
}

/** Send one request; responses go to onResponse until the daemon closes. */
export async function requestLocal (sock: Socket, req: LocalRequest, onResponse: (r: LocalResponse) => void): Promise<void> {
  sock.write(JSON.stringify(req) + '\n')
  const rl = createInterface({ input: sock })
  for await (const line of rl) {
    if (line.trim() === '') continue
    onResponse(JSON.parse(line) as LocalResponse)
  }
}
