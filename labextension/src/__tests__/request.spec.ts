const makeRequest = jest.fn();

jest.mock('@jupyterlab/services', () => ({
  ServerConnection: {
    NetworkError: class NetworkError extends TypeError {},
    makeSettings: () => ({ baseUrl: 'http://lab/base/' }),
    makeRequest: (...args: unknown[]) => makeRequest(...args)
  }
}));
jest.mock('@jupyterlab/coreutils', () => ({
  URLExt: {
    join: (...parts: string[]) => parts.join('/').replace(/([^:])\/\/+/g, '$1/')
  }
}));

import {
  addKernelspec,
  ApiError,
  getKernel,
  getVersions,
  listKernels,
  requestAPI,
  retryDropped,
  rollbackTo,
  runAsRecorded,
  startExtend,
  startPull,
  forgetAsRecorded
} from '../request';

function answer(status: number, body: string, statusText = ''): void {
  makeRequest.mockResolvedValueOnce(new Response(body, { status, statusText }));
}

/** The error a call fails with. */
async function failure(call: Promise<unknown>): Promise<ApiError> {
  return call.then(
    () => {
      throw new Error('the call succeeded');
    },
    (error: ApiError) => error
  );
}

beforeEach(() => makeRequest.mockReset());

describe('requestAPI', () => {
  it('calls /mlcontainer/<endpoint> and returns the JSON answer', async () => {
    answer(200, '{"reachable": true}');
    await expect(requestAPI('engine')).resolves.toEqual({ reachable: true });
    expect(makeRequest.mock.calls[0][0]).toBe(
      'http://lab/base/mlcontainer/engine'
    );
  });

  it('gives an empty object for an empty answer', async () => {
    answer(200, '');
    await expect(requestAPI('x')).resolves.toEqual({});
  });

  it("throws the server's message with the HTTP status", async () => {
    answer(404, '{"message": "kernel k does not run in a container"}');
    const error = await failure(requestAPI('kernels/k'));
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(404);
    expect(error.message).toBe('kernel k does not run in a container');
  });

  it('falls back to the status line when the answer is not JSON', async () => {
    answer(502, '<html>bad gateway</html>', 'Bad Gateway');
    const error = await failure(requestAPI('engine'));
    expect(error.status).toBe(502);
    expect(error.message).toBe('502 Bad Gateway');
  });

  it('says when the server cannot be reached (status 0)', async () => {
    makeRequest.mockRejectedValueOnce(new TypeError('Failed to fetch'));
    const error = await failure(requestAPI('engine'));
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(0);
    expect(error.message).toMatch(
      /cannot be reached: TypeError: Failed to fetch/
    );
  });
});

describe('API calls', () => {
  it('lists kernels', async () => {
    answer(200, '{"kernels": [{"kernel_id": "a"}]}');
    await expect(listKernels()).resolves.toEqual([{ kernel_id: 'a' }]);
  });

  it('asks for one kernel with a log tail', async () => {
    answer(200, '{"kernel_id": "a/b"}');
    await getKernel('a/b', 0);
    expect(makeRequest.mock.calls[0][0]).toBe(
      'http://lab/base/mlcontainer/kernels/a%2Fb?tail=0'
    );
  });

  it('posts pulls and kernelspecs as JSON', async () => {
    answer(202, '{"image": "x", "status": "pulling"}');
    await startPull('x');
    answer(201, '{"name": "n"}');
    await addKernelspec({ image: 'x', gpus: 'none' });
    const [pull, add] = makeRequest.mock.calls;
    expect(pull[0]).toBe('http://lab/base/mlcontainer/images/pull');
    expect(pull[1]).toEqual({ method: 'POST', body: '{"image":"x"}' });
    expect(add[0]).toBe('http://lab/base/mlcontainer/kernelspecs');
    expect(JSON.parse(add[1].body)).toEqual({ image: 'x', gpus: 'none' });
  });
});

describe('environment calls', () => {
  it('send the bodies the server expects', async () => {
    answer(200, '{"name": "k", "current": 1, "versions": []}');
    await getVersions('py 3');
    answer(202, '{"id": "e"}');
    await startExtend('k', { pip: ['tqdm==4.66.5'], apt: [] });
    answer(200, '{"current": 1}');
    await rollbackTo('k', 1);
    answer(200, '{"number": 1}');
    await runAsRecorded('dir/a.ipynb', 'k', 'sha256:aaa');
    const [versions, extend, rollback, recorded] = makeRequest.mock.calls;
    expect(versions[0]).toBe(
      'http://lab/base/mlcontainer/kernelspecs/py%203/versions'
    );
    expect(extend[0]).toBe('http://lab/base/mlcontainer/kernelspecs/k/extend');
    expect(JSON.parse(extend[1].body)).toEqual({
      pip: ['tqdm==4.66.5'],
      apt: []
    });
    expect(rollback[1]).toEqual({
      method: 'POST',
      body: '{"version":1}'
    });
    expect(recorded[0]).toBe('http://lab/base/mlcontainer/as-recorded');
    expect(JSON.parse(recorded[1].body)).toEqual({
      path: 'dir/a.ipynb',
      kernel_name: 'k',
      image: 'sha256:aaa'
    });
  });
});

describe('forgetAsRecorded', () => {
  it('names the notebook and kernel in the query', async () => {
    answer(200, ''); // the server answers 204, which a test Response cannot carry
    await forgetAsRecorded('dir/a b.ipynb', 'k');
    const [[url, init]] = makeRequest.mock.calls;
    expect(url).toBe(
      'http://lab/base/mlcontainer/as-recorded?path=dir%2Fa+b.ipynb&kernel_name=k'
    );
    expect(init).toEqual({ method: 'DELETE' });
  });
});

describe('retryDropped', () => {
  it('tries a request the browser dropped again, and only that', async () => {
    const dropped = new ApiError('Failed to fetch', 0);
    const flaky = jest
      .fn()
      .mockRejectedValueOnce(dropped)
      .mockRejectedValueOnce(dropped)
      .mockResolvedValue('kernel');
    await expect(retryDropped(flaky, 4, 1)).resolves.toBe('kernel');
    expect(flaky).toHaveBeenCalledTimes(3);

    const refused = jest
      .fn()
      .mockRejectedValue(new ApiError('no such kernelspec', 404));
    await expect(retryDropped(refused, 4, 1)).rejects.toThrow(
      'no such kernelspec'
    );
    expect(refused).toHaveBeenCalledTimes(1);

    const gone = jest.fn().mockRejectedValue(dropped);
    await expect(retryDropped(gone, 3, 1)).rejects.toBe(dropped);
    expect(gone).toHaveBeenCalledTimes(3);
  });
});
