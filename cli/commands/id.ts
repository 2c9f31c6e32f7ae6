import { connectLocal, requestLocal } from '../../src/daemon/local-api.js'
import { loadOrCreateKey, peerIdOf, resolveHome } from '../../src/identity/identity.js'

export async function idCommand (a: { home?: string }): Promise<number> {
  const home = resolveHome(a.home)
  process.stdout.write(peerIdOf(await loadOrCreateKey(home)) + '\n')
  const sock = await connectLocal(home).catch(() => undefined)
  if (sock != null) {
    await requestLocal(sock, { type: 'status' }, (r) => {
      if (r.type === 'status') for (const a of r.addrs) process.stdout.write(a + '\n')
    })
  }
  return 0
}
