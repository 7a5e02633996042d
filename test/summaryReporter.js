// Prints one plain closing line, `jest: N passed, N failed, N skipped`, after jest's own summary.
// Tests that skip themselves when something is missing put "NOT RUN (<why>)" in their name; those
// are listed before it, so that nothing is silently not run (tests left out by `-t` are only counted).
class SummaryReporter {
  onRunComplete(_contexts, results) {
    const skipped = results.numPendingTests + results.numTodoTests;
    for (const file of results.testResults) {
      for (const t of file.testResults) {
        if (t.status !== "passed" && t.status !== "failed" && t.fullName.includes("NOT RUN")) process.stdout.write(`jest: not run: ${t.fullName}\n`);
      }
    }
    process.stdout.write(`jest: ${results.numPassedTests} passed, ${results.numFailedTests} failed, ${skipped} skipped\n`);
  }
}
module.exports = SummaryReporter;
