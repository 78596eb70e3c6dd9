/** Pull states as the sidebar keeps them: from the pull request's answer and from events. */
import type { IPullState } from './request';

/**
 * What to show once a pull request answers: its answer, unless an event for the image
 * already said the pull ended (a pull of layers the engine has ends before its request's
 * answer arrives; the answer, still "pulling", must not hide that). The sidebar forgets the
 * image's earlier state before it asks, so ``seen`` can only be about this pull.
 */
export function afterStart(
  seen: IPullState | undefined,
  answer: IPullState
): IPullState {
  if (seen && seen.status !== 'pulling' && answer.status === 'pulling') {
    return seen;
  }
  return answer;
}
