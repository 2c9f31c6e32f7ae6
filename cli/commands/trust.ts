import { ensureHome, resolveHome } from '../../src/home/home.js'
import { checkPeerId, InvalidPeerIdError, TrustList } from '../../src/home/trust.js'
import { UsageError } from '../exit-codes.js'

export async function trustCommand (peer: string, a: { home?: string }): Promise<number> {
  const home = resolveHome(a.home)
  await ensureHome(home)
  let id: string
  try { id = checkPeerId(peer) } catch (err) { throw new UsageError((err as InvalidPeerIdError).message) }
  const added = await new TrustList(home).add(id)
  process.stdout.write(added ? `trusted ${id}\n` : `${id} was already trusted\n`)
  return 0
}

export async function untrustCommand (peer: string, a: { home?: string }): Promise<number> {
  const home = resolveHome(a.home)
  let id: string
  try { id = checkPeerId(peer) } catch (err) { throw new UsageError((err as InvalidPeerIdError).message) }
  const removed = await new TrustList(home).remove(id)
  process.stdout.write(removed ? `no longer trusted: ${id}\n` : `${id} was not trusted\n`)
  return 0
}
