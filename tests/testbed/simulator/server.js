// The test bed's IAM decisions: one long-lived Node process around @cloud-copilot/iam-simulate
// (pinned in package-lock.json), so every request the emulator answers is allowed or denied by an
// evaluator of IAM's own logic, not by moto's.
//
// Protocol (JSON lines): moto_launcher.py writes {"id": n, "simulation": {...}} on stdin, where
// `simulation` is iam-simulate's Simulation (request, identityPolicies, resourcePolicy,
// permissionBoundaryPolicies, ...), and reads {"id": n, "result": "Allowed" | "ExplicitlyDenied"
// | "ImplicitlyDenied", "policyType": ..., "ignoredContextKeys": [...]} or {"id": n, "error": ...}.
//
// One documented divergence is corrected here (tests/testbed/SIMULATOR.md, case web-identity-keys):
// iam-simulate keeps only the condition keys its data lists for an action, and for
// sts:AssumeRoleWithWebIdentity that list has no keys of a custom IAM OIDC provider, such as EKS's
// `oidc.eks.<region>.amazonaws.com/id/<ID>:sub` and `:aud`; a trust policy conditioned on them
// could then never match. AWS evaluates them (IAM User Guide, "Available keys for AWS web
// identity federation"). So a web-identity decision is validated as usual and then evaluated
// with the context exactly as given (iam-simulate's runUnsafeSimulation).
'use strict'

const readline = require('node:readline')
const { runSimulation, runUnsafeSimulation } = require('@cloud-copilot/iam-simulate')
const { createValidatedPolicy, validateTrustPolicy } = require('@cloud-copilot/iam-policy')

function isWebIdentity(simulation) {
  return simulation.request.action.toLowerCase() === 'sts:assumerolewithwebidentity'
}

function decideWebIdentity(simulation, validated) {
  // runUnsafeSimulation returns the decision only ('Allowed', 'ImplicitlyDenied', ...).
  const result = runUnsafeSimulation(
    {
      ...simulation,
      // runUnsafeSimulation names a resource policy only when it comes pre-validated.
      resourcePolicy: createValidatedPolicy(simulation.resourcePolicy, validateTrustPolicy, { name: 'trust policy' })
    },
    {}
  )
  return {
    result,
    policyType: result === 'Allowed' ? undefined : 'trust policy',
    // Keys validation dropped that the web-identity evaluation used after all.
    evaluatedAnyway: validated.result ? validated.result.ignoredContextKeys : []
  }
}

// Which kind of policy decided a denial, as AWS names it in its messages ("because no
// identity-based policy allows ...", "with an explicit deny in a resource-based policy", ...).
function denialSource(analysis) {
  if (!analysis) return undefined
  const explicit = (part) => part && part.denyStatements && part.denyStatements.length > 0
  if (explicit(analysis.identityAnalysis)) return 'identity-based policy'
  if (explicit(analysis.resourceAnalysis)) return 'resource-based policy'
  if (explicit(analysis.permissionBoundaryAnalysis)) return 'permissions boundary'
  if (analysis.permissionBoundaryAnalysis && analysis.permissionBoundaryAnalysis.result === 'ImplicitlyDenied') {
    return 'permissions boundary'
  }
  if (analysis.resourceAnalysis && analysis.resourceAnalysis.result !== 'NotApplicable' &&
      analysis.identityAnalysis && analysis.identityAnalysis.result === 'Allowed') {
    return 'resource-based policy'
  }
  return 'identity-based policy'
}

async function decide(simulation) {
  // Validation (actions, resource ARNs, policy grammar) always runs.
  const response = await runSimulation(simulation, {})
  if (response.resultType === 'error') {
    return { error: response.errors }
  }
  if (isWebIdentity(simulation)) {
    return decideWebIdentity(simulation, response)
  }
  if (response.resultType !== 'single') {
    return { error: `expected one resource, got a ${response.resultType} simulation` }
  }
  const analysis = response.result.analysis
  return {
    result: response.overallResult,
    policyType: response.overallResult === 'Allowed' ? undefined : denialSource(analysis),
    ignoredContextKeys: response.result.ignoredContextKeys || []
  }
}

const input = readline.createInterface({ input: process.stdin, terminal: false })
const pending = new Set()
input.on('line', (line) => {
  const answered = answer(line)
  pending.add(answered)
  answered.finally(() => pending.delete(answered))
})
// stdin closed (the emulator is gone): answer what is in flight, then exit.
input.on('close', () => Promise.allSettled([...pending]).then(() => process.exit(0)))

async function answer(line) {
  let id = null
  try {
    const message = JSON.parse(line)
    id = message.id
    const answer = await decide(message.simulation)
    process.stdout.write(JSON.stringify({ id, ...answer }) + '\n')
  } catch (err) {
    process.stdout.write(JSON.stringify({ id, error: String((err && err.stack) || err) }) + '\n')
  }
}
