import { afterStart } from '../pulls';
import type { IPullState } from '../request';

const state = (status: IPullState['status'], message = ''): IPullState => ({
  image: 'team/python:3.11',
  status,
  fraction: null,
  message,
  digest: null
});

describe('afterStart', () => {
  it("keeps an end that an event reported before the request's answer", () => {
    const done = state('done');
    expect(afterStart(done, state('pulling', 'waiting for the registry'))).toBe(
      done
    );
    const failed = state('error', 'manifest unknown');
    expect(afterStart(failed, state('pulling'))).toBe(failed);
  });

  it('takes the answer otherwise', () => {
    const answer = state('pulling', 'waiting for the registry');
    expect(afterStart(undefined, answer)).toBe(answer);
    expect(afterStart(state('pulling', 'layer 1/3'), answer)).toBe(answer);
    const done = state('done');
    expect(afterStart(state('pulling'), done)).toBe(done);
  });
});
