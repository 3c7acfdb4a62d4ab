package worker

import (
	"context"
	"fmt"
	"strings"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/mailmove/mailmove/workflows"
)

// EnsureSearchAttributes checks that the namespace has mailmove's search
// attributes; with create it registers the missing ones. A move that
// upserts an unregistered attribute fails its workflow task over and over,
// so a worker refuses to start without them. The dev server registers them
// at its first start only: an older database lacks those added since.
func EnsureSearchAttributes(ctx context.Context, c client.Client, namespace string, create bool) error {
	have, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("list search attributes of namespace %s: %w", namespace, err)
	}
	missing := map[string]enums.IndexedValueType{}
	var names []string
	for _, sa := range workflows.SearchAttributes {
		name, typ, _ := strings.Cut(sa, "=")
		if _, ok := have.GetCustomAttributes()[name]; ok {
			continue
		}
		if typ != "Keyword" {
			return fmt.Errorf("search attribute %s: unsupported type %s", name, typ)
		}
		missing[name] = enums.INDEXED_VALUE_TYPE_KEYWORD
		names = append(names, name)
	}
	if len(missing) == 0 {
		return nil
	}
	if !create {
		var cmds []string
		for _, n := range names {
			cmds = append(cmds, fmt.Sprintf("temporal operator search-attribute create --namespace %s --name %s --type Keyword", namespace, n))
		}
		return fmt.Errorf("namespace %s lacks the search attributes %s; register them with:\n  %s",
			namespace, strings.Join(names, ", "), strings.Join(cmds, "\n  "))
	}
	_, err = c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: namespace, SearchAttributes: missing})
	if err != nil {
		return fmt.Errorf("register search attributes %s: %w", strings.Join(names, ", "), err)
	}
	return nil
}
