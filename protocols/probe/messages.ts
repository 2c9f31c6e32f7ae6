import { z } from 'zod/v3'

/**
 * /gosync/probe/1 (PROTOCOLS §5.5). The prober's first frame is `probe`; after `ready`, every
 * frame is data (any bytes, read and dropped). The target answers `ack` with the bytes of data
 * frames read so far, and `done` at the prober's end of stream.
 */
export const ProbeHelloMsg = z.object({
  type: z.literal('probe'),
  session: z.string().regex(/^[0-9a-f]{32}$/)
})

export const ProbeReplyMsg = z.discriminatedUnion('type', [
  z.object({ type: z.literal('ready') }),
  z.object({ type: z.literal('refuse'), error: z.string().max(4096) }),
  z.object({ type: z.literal('ack'), bytes: z.number().int().nonnegative() }),
  z.object({ type: z.literal('done'), bytes: z.number().int().nonnegative() })
])
export type ProbeReplyMsg = z.infer<typeof ProbeReplyMsg>
