/** Stable exit codes, in one place (scripts depend on them). */
export const EXIT = {
  /** every target ended ok or unchanged */
  OK: 0,
  /** the task ran, at least one target failed */
  TARGET_FAILED: 1,
  /** bad command line */
  USAGE: 2,
  /** the task could not run at all (source unreadable, refused, no daemon reachable) */
  TASK_FAILED: 3,
  /** Ctrl-C (SIGINT) or SIGTERM: the task was cancelled (128 + SIGINT, as shells report it) */
  INTERRUPTED: 130
} as const

export class UsageError extends Error {
  override name = 'UsageError'
}
