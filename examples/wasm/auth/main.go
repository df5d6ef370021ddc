// The auth plugin of docs/wasm-plugins.md: it admits a request whose `Authorization: Bearer`
// token is an HS256 JWT signed with config.secret, whose `aud` is config.audience and whose
// `exp`, when present, has not passed. Anything else is answered 401 with WWW-Authenticate
// (RFC 6750 §3). The token's `sub` goes to the backend as x-auth-subject. Without
// config.secret no token can be verified: every request is refused (and the log says why).
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	"loom.dev/examples/wasm/pdk"
)

func main() {}

type claims struct {
	Aud json.RawMessage `json:"aud"`
	Exp *float64        `json:"exp"`
	Sub string          `json:"sub"`
}

//go:wasmexport on_request
func onRequest() int32 {
	req := pdk.Request()
	audience := pdk.Config("audience")
	secret := pdk.Config("secret")
	sub, why := verify(req.Header("authorization"), []byte(secret), audience, time.Now())
	if secret == "" && why != "no token" {
		pdk.Log("warn", "config.secret is not set: no token can be verified")
		why = "bad signature"
	}
	if why != "" {
		challenge := `Bearer realm="` + audience + `"`
		if why != "no token" {
			challenge += `, error="invalid_token", error_description="` + why + `"`
		}
		return pdk.Respond(401, map[string]string{
			"www-authenticate": challenge,
			"content-type":     "text/plain",
		}, "unauthorized: "+why+"\n")
	}
	return pdk.Continue(&pdk.Actions{RequestHeaders: &pdk.HeaderEdits{
		Set: []pdk.Header{{Name: "x-auth-subject", Value: sub}},
	}})
}

// verify returns the token's subject, or why the request is refused.
func verify(authorization string, secret []byte, audience string, now time.Time) (string, string) {
	token, ok := strings.CutPrefix(authorization, "Bearer ")
	if !ok || token == "" {
		return "", "no token"
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", "malformed token"
	}
	var header struct {
		Alg string `json:"alg"`
	}
	if !decode(parts[0], &header) || header.Alg != "HS256" {
		return "", "unsupported algorithm"
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, mac.Sum(nil)) {
		return "", "bad signature"
	}
	var c claims
	if !decode(parts[1], &c) {
		return "", "malformed claims"
	}
	if !audienceMatches(c.Aud, audience) {
		return "", "wrong audience"
	}
	if c.Exp != nil && float64(now.Unix()) >= *c.Exp {
		return "", "token expired"
	}
	return c.Sub, ""
}

// audienceMatches: `aud` is a string or an array of strings (RFC 7519 §4.1.3).
func audienceMatches(raw json.RawMessage, audience string) bool {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return one == audience
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		for _, a := range many {
			if a == audience {
				return true
			}
		}
	}
	return false
}

func decode(part string, v any) bool {
	b, err := base64.RawURLEncoding.DecodeString(part)
	return err == nil && json.Unmarshal(b, v) == nil
}
