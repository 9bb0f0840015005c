-- kubelab benchmark: every request creates a new object (unique name per thread and request).
-- Arguments (after --): namespace, a JSON body with one %s where the name goes, the plural (pods).
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  namespace = args[1]
  template = args[2]
  counter = 0
  path = "/api/v1/namespaces/" .. namespace .. "/" .. (args[3] or "pods")
end

function request()
  counter = counter + 1
  local body = string.format(template, string.format("wrk-%d-%07d", tid, counter))
  return wrk.format("POST", path, nil, body)
end
