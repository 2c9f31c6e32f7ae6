import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { mplex } from '@libp2p/mplex'
import type { Libp2p, PrivateKey, StreamMuxerFactory } from '@libp2p/interface'
import { withCoalescedWrites } from './coalesced-writes.js'
import { noiseCrypto } from './noise-crypto.js'
// mDNS, pnet, bootstrap, the DHT and relaying are imported only when configured: a LAN
// daemon does not carry their code (~7 MB of resident memory)

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
  /**
   * Known peers (multiaddrs with /p2p/) to connect to at start and keep: they answer
   * peer-routing queries (a private Kademlia DHT) and, if they run a relay service, relay
   * for hosts that cannot reach each other. Enables the DHT and circuit-relay transport.
   */
  bootstrap?: string[]
  /** serve as a circuit relay (v2) for other gosync nodes, without the default 2 min / 128 KiB limits */
  relayService?: boolean
}

/** Our own DHT: gosync peers must not join (or leak into) the public IPFS DHT. */
const DHT_PROTOCOL = '/gosync/kad/1.0.0'

/** The one place the libp2p stack is configured: TCP, Noise, yamux + mplex; optional mDNS, swarm key, DHT, relay. */
export async function createNode (opts: NodeOptions): Promise<Libp2p> {
  const muxers: Record<MuxerName, () => (components: any) => StreamMuxerFactory> = {
    // window grows to 4 MiB: enough for a LAN's bandwidth-delay product
    yamux: () => yamux({ streamOptions: { maxStreamWindowSize: 16 * 1024 * 1024, initialStreamWindowSize: 4 * 1024 * 1024 } }),
    // mplex has no flow control (our relay adds credit); allow our burst of streams per connection
    mplex: () => mplex({ disconnectThreshold: 1000 })
  }
  const bootstrapList = opts.bootstrap ?? []
  const wide = bootstrapList.length > 0 || opts.relayService === true
  const services: Record<string, any> = {}
  const [{ mdns }, { preSharedKey }, { bootstrap }] = await Promise.all([
    opts.mdns ? import('@libp2p/mdns') : { mdns: undefined },
    opts.swarmKey != null ? import('@libp2p/pnet') : { preSharedKey: undefined },
    bootstrapList.length > 0 ? import('@libp2p/bootstrap') : { bootstrap: undefined }
  ])
  const [{ identify }, { ping }, { kadDHT, passthroughMapper }, { circuitRelayServer, circuitRelayTransport }, { dcutr }] = wide
    ? await Promise.all([import('@libp2p/identify'), import('@libp2p/ping'), import('@libp2p/kad-dht'), import('@libp2p/circuit-relay-v2'), import('@libp2p/dcutr')])
    : [{}, {}, {}, {}, {}] as any
  if (wide) {
    services.identify = identify()
    services.ping = ping()
    // LAN and lab addresses are private: keep them (the default mapper drops them)
    services.dht = kadDHT({ protocol: DHT_PROTOCOL, clientMode: false, peerInfoMapper: passthroughMapper })
    // upgrade a relayed connection to a direct one by hole punching, where both ends have public addresses
    services.dcutr = dcutr()
  }
  if (opts.relayService === true) {
    // a sync is neither short nor small: no per-connection duration or data limit
    services.relay = circuitRelayServer({ reservations: { applyDefaultLimit: false, maxReservations: 256 } })
  }
  return await createLibp2p({
    privateKey: opts.privateKey,
    // with known peers, also take a reservation on any of them that relays (…/p2p-circuit)
    addresses: { listen: bootstrapList.length > 0 && opts.listen.length > 0 ? [...opts.listen, '/p2p-circuit'] : opts.listen },
    transports: wide ? [tcp(), circuitRelayTransport()] : [tcp()],
    // one socket write per send, not one per piece (coalesced-writes.ts)
    connectionEncrypters: [withCoalescedWrites(noise({ crypto: noiseCrypto }))],
    streamMuxers: (opts.muxers ?? ['yamux', 'mplex']).map(m => muxers[m]()),
    peerDiscovery: [
      ...(mdns != null ? [mdns({ serviceTag: 'gosync' } as any)] : []),
      ...(bootstrap != null ? [bootstrap({ list: bootstrapList })] : [])
    ],
    services,
    connectionManager: { maxConnections: 512 },
    // libp2p pings every connection every 10 s and aborts it when an answer is late (5 s by
    // default). On a busy link the ping waits behind the data queued in the kernel and in Noise
    // (seconds on a slow link): allow as long as our own stall timeout's default, so a healthy
    // transfer is never cut and a dead peer's connection still goes within ~40 s
    connectionMonitor: { pingTimeout: { minTimeout: 30_000, maxTimeout: 60_000 } },
    ...(preSharedKey != null && opts.swarmKey != null ? { connectionProtector: preSharedKey({ psk: opts.swarmKey }) } : {})
  })
}
