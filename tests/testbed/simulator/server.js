// The test bed's IAM decisions: one long-lived Node process around @cloud-copilot/iam-simulate
// (pinned in package-lock.json), so every request the emulator answers is allowed or denied by an
// evaluator of IAM's own logic, not by moto's.
//
// Protocol (JSON lines): moto_launcher.py writes {"id": n, "simulation": {...}} on stdin, where
// `simulation` is iam-simulate's Simulation (request, identityPolicies, resourcePolicy,
// permissionBoundaryPolicies, ...), and reads {"id": n, "result": "Allowed" | "ExplicitlyDenied"
// | "ImplicitlyDenied", "policyType": ..., "ignoredContextKeys": [...]} or {"id": n, "error": ...}.
//
// Documented divergences are corrected here (each is a case in tests/testbed/SIMULATOR.md, pinned by
// a test): iam-simulate keeps only the context keys its data lists for an action, and drops two
// families that AWS documents and evaluates, so a policy conditioned on them could never match:
// - the keys of a custom IAM OIDC provider on sts:AssumeRoleWithWebIdentity, such as EKS's
//   `oidc.eks.<region>.amazonaws.com/id/<ID>:sub` and `:aud` (IAM User Guide, "Available keys for
//   AWS web identity federation");
// - `kms:EncryptionContext:<key>` when the encryption-context key has colons of its own, such as
//   S3's `kms:EncryptionContext:aws:s3:arn` (AWS KMS Developer Guide, "kms:EncryptionContext:context-key";
//   Amazon S3 User Guide, "Encryption context" of SSE-KMS).
// When validation drops a key of those families, the request is evaluated again with them kept
// (iam-simulate's runUnsafeSimulation), every other dropped key still left out.
'use strict'

const readline = require('node:readline')
const { runSimulation, runUnsafeSimulation } = require('@cloud-copilot/iam-simulate')
const { createValidatedPolicy, validateResourcePolicy, validateTrustPolicy } = require('@cloud-copilot/iam-policy')

const DOCUMENTED_KEYS = [
  { action: /^sts:assumerolewithwebidentity$/i, key: /^[^:]+\/[^:]*:(sub|aud|amr)$/i },
  { action: /^kms:/i, key: /^kms:encryptioncontext:.+:.+$/i }
]

function documentedButDropped(simulation, ignored) {
  const action = simulation.request.action
  return ignored.filter((key) => DOCUMENTED_KEYS.some((d) => d.action.test(action) && d.key.test(key)))
}

function decideWithDocumentedKeys(simulation, ignored, kept) {
  const context = {}
  for (const [key, value] of Object.entries(simulation.request.contextVariables)) {
    if (!ignored.includes(key) || kept.includes(key)) context[key] = value
  }
  const resourcePolicy = simulation.resourcePolicy
    ? // runUnsafeSimulation names a resource policy only when it comes pre-validated.
      createValidatedPolicy(simulation.resourcePolicy, isTrust(simulation) ? validateTrustPolicy : validateResourcePolicy, {
        name: isTrust(simulation) ? 'trust policy' : 'resource policy'
      })
    : undefined
  // runUnsafeSimulation returns the decision only ('Allowed', 'ImplicitlyDenied', ...).
  const result = runUnsafeSimulation(
    { ...simulation, request: { ...simulation.request, contextVariables: context }, resourcePolicy },
    {}
  )
  return {
    result,
    policyType: result === 'Allowed' ? undefined : isTrust(simulation) ? 'trust policy' : undefined,
    evaluatedAnyway: kept
  }
}

function isTrust(simulation) {
  return /^sts:/i.test(simulation.request.action)
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
  const ignored = response.resultType === 'single' ? response.result.ignoredContextKeys || [] : []
  const kept = documentedButDropped(simulation, ignored)
  if (kept.length > 0) {
    return decideWithDocumentedKeys(simulation, ignored, kept)
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
