import type { z } from 'zod/v3'
import type { FramedStream } from './framed-stream.js'

export class ProtocolError extends Error {
  override name = 'ProtocolError'
}

const decoder = new TextDecoder('utf-8', { fatal: true })
const encoder = new TextEncoder()

/**
 * Read one JSON frame and validate it against `schema`; null at a clean end of stream.
 * `fast`: the same rules as plain code, for large messages; a value it refuses goes through
 * the schema (which gives the error text).
 */
export async function readJson<S extends z.ZodType> (fs: FramedStream, schema: S, signal?: AbortSignal, fast?: (v: unknown) => boolean): Promise<z.infer<S> | null> {
  const frame = await fs.read(signal)
  if (frame == null) return null
  let value: unknown
  try {
    value = JSON.parse(decoder.decode(frame.subarray()))
  } catch {
    throw new ProtocolError('frame is not valid UTF-8 JSON')
  }
  if (fast?.(value) === true) return value as z.infer<S>
  const parsed = schema.safeParse(value)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    throw new ProtocolError(`unexpected message: ${issue?.path.join('.') ?? ''} ${issue?.message ?? ''}`.trim())
  }
  return parsed.data
}

/** Like readJson, but end of stream is an error. */
export async function expectJson<S extends z.ZodType> (fs: FramedStream, schema: S, signal?: AbortSignal, fast?: (v: unknown) => boolean): Promise<z.infer<S>> {
  const m = await readJson(fs, schema, signal, fast)
  if (m == null) throw new ProtocolError('stream ended before the expected message')
  return m
}

export async function writeJson (fs: FramedStream, value: unknown, signal?: AbortSignal): Promise<void> {
  await fs.write(encoder.encode(JSON.stringify(value)), signal)
}
