/** A wait that took too long; name 'TimeoutError' like AbortSignal.timeout's reason. */
export class TimeoutError extends Error {
  override name = 'TimeoutError'
}
