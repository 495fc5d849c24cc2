/**
 * The Node the suite runs on: tap starts its workers itself (process.execPath or the PATH's node),
 * and .ci/run runs the suite on a second Node (24, from npm's `node` package) as well.
 */
import t from 'tap';

const runner = process.env.TEST_RUNNER_NODE;

t.test('the test workers run on the Node of the npm script that started tap', { skip: !runner && 'not started by npm test' }, async (t) => {
  t.comment(`Node ${process.version} at ${process.execPath}`);
  t.equal(process.version, runner, 'the same Node as scripts/test.ts');
});
