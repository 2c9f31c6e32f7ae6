import { chmod, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { ensureHome } from '../home/home.js'

export const KEY_FILE = 'identity.key'

export { resolveHome, ensureHome } from '../home/home.js'

/** The node's stable Ed25519 key: created once (mode 0600), then reused. */
export async function loadOrCreateKey (home: string): Promise<PrivateKey> {
  await ensureHome(home)
  const path = join(home, KEY_FILE)
  try {
    return privateKeyFromProtobuf(await readFile(path))
  } catch (err: any) {
    if (err.code !== 'ENOENT') throw new Error(`cannot read identity key ${path}: ${err.message}`)
  }
  const key = await generateKeyPair('Ed25519')
  try {
    await writeFile(path, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' })
  } catch (err: any) {
    // another process created it first: use theirs
    if (err.code === 'EEXIST') return privateKeyFromProtobuf(await readFile(path))
    throw err
  }
  await chmod(path, 0o600)
  return key
}

export function peerIdOf (key: PrivateKey): string {
  return peerIdFromPrivateKey(key).toString()
}
