// Reads Kubernetes objects (one JSON object per line) on stdin and validates each custom
// resource with the models generated from its CRD (@kubernetes-models/prometheus-operator,
// @kubernetes-models/gateway-api). Prints {"validated": N, "problems": [...]} as JSON.
// Run from the directory where those packages are installed (module resolution starts there).
import { readFileSync } from "node:fs";
import { ServiceMonitor, PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
import { HTTPRoute } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1";

const models = {
  "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor,
  "monitoring.coreos.com/v1/PrometheusRule": PrometheusRule,
  "gateway.networking.k8s.io/v1/HTTPRoute": HTTPRoute,
};
const problems = [];
let validated = 0;
for (const line of readFileSync(0, "utf8").split("\n")) {
  if (!line.trim()) continue;
  const obj = JSON.parse(line);
  const id = `${obj.kind}/${obj.metadata?.name}`;
  const Model = models[`${obj.apiVersion}/${obj.kind}`];
  if (!Model) {
    problems.push(`${id}: no model for ${obj.apiVersion} ${obj.kind}`);
    continue;
  }
  try {
    new Model(obj).validate();
    validated += 1;
  } catch (e) {
    problems.push(`${id}: ${e.message}`);
  }
}
process.stdout.write(JSON.stringify({ validated, problems }));
