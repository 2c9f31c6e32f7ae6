import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'

/**
 * A receipt: a target's statement, signed with its identity key, that its destination
 * now holds the tree whose manifest digest is `digest` (after session `session`). Anyone
 * with the target's PeerId can check it; an Ed25519 PeerId carries its public key.
 */
export interface ReceiptClaim { session: string, dst: string, digest: string }
export interface Receipt { digest: string, /** base64 Ed25519 signature over receiptPayload */ signature: string }

export type Signer = (data: Uint8Array) => Promise<Uint8Array>

/** The signed bytes: a fixed label and the claim, one per line. */
export function receiptPayload (c: ReceiptClaim): Uint8Array {
  return new TextEncoder().encode(`gosync-receipt/1\n${c.session}\n${c.dst}\n${c.digest}\n`)
}

export function signerFor (key: PrivateKey): Signer {
  return async (data) => await key.sign(data)
}

export async function signReceipt (sign: Signer, c: ReceiptClaim): Promise<Receipt> {
  return { digest: c.digest, signature: Buffer.from(await sign(receiptPayload(c))).toString('base64') }
}

/** True when `peer` signed exactly this claim. */
export async function verifyReceipt (peer: string, c: ReceiptClaim, r: Receipt): Promise<boolean> {
  try {
    if (r.digest !== c.digest) return false
    const key = peerIdFromString(peer).publicKey
    if (key == null) return false
    return await key.verify(receiptPayload(c), Buffer.from(r.signature, 'base64'))
  } catch {
    return false
  }
}
