import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { mplex } from '@libp2p/mplex'
import { mdns } from '@libp2p/mdns'
import { preSharedKey } from '@libp2p/pnet'
import type { Libp2p, PrivateKey, StreamMuxerFactory } from '@libp2p/interface'

export type MuxerName = 'yamux' | 'mplex'

export interface NodeOptions {
  privateKey: PrivateKey
  /** multiaddrs to listen on; none for a dial-only node (the CLI acting as a source) */
  listen: string[]
  mdns: boolean
  /** in order of preference; default yamux (flow control) then mplex */
  muxers?: MuxerName[]
  /** private-network key file content (<home>/swarm.key): only holders can connect */
  swarmKey?: Uint8Array
}

/** The one place the libp2p stack is configured: TCP, Noise, yamux + mplex, optional mDNS. */
export async function createNode (opts: NodeOptions): Promise<Libp2p> {
  const muxers: Record<MuxerName, () => (components: any) => StreamMuxerFactory> = {
    // window grows to 4 MiB: enough for a LAN's bandwidth-delay product
    yamux: () => yamux({ streamOptions: { maxStreamWindowSize: 16 * 1024 * 1024, initialStreamWindowSize: 4 * 1024 * 1024 } }),
    // mplex has no flow control (our relay adds credit); allow our burst of streams per connection
    mplex: () => mplex({ disconnectThreshold: 1000 })
  }
  return await createLibp2p({
    privateKey: opts.privateKey,
    addresses: { listen: opts.listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: (opts.muxers ?? ['yamux', 'mplex']).map(m => muxers[m]()),
    peerDiscovery: opts.mdns ? [mdns({ serviceTag: 'gosync' } as any)] : [],
    connectionManager: { maxConnections: 512 },
    ...(opts.swarmKey != null ? { connectionProtector: preSharedKey({ psk: opts.swarmKey }) } : {})
  })
}
