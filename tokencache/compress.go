package tokencache

import (
	"bytes"
	"compress/flate"
	"io"
	"sync"
)

// JWT headers and payloads are JSON whose claim names recur in every token. They are
// deflated against a fixed dictionary of Entra ID and OIDC claims, which roughly halves
// them. The dictionary is part of the stored format: change it only under a new kind.
const jwtDictV1 = `{"typ":"JWT","alg":"RS256","x5t":"","kid":""}` +
	`{"aud":"api://","iss":"https://sts.windows.net/","iss":"https://login.microsoftonline.com/","/v2.0",` +
	`"iat":17,"nbf":17,"exp":17,"acct":0,"acr":"1","aio":"","amr":["pwd","mfa","rsa"],"app_displayname":"",` +
	`"appid":"","appidacr":"1","azp":"","azpacr":"1","family_name":"","given_name":"","idtyp":"user",` +
	`"ipaddr":"","name":"","oid":"","onprem_sid":"S-1-5-21-","puid":"","rh":"0.A","scp":"user_impersonation openid profile email offline_access",` +
	`"roles":[""],"groups":[""],"wids":[""],"sid":"","sub":"","tid":"","unique_name":"","upn":"","preferred_username":"","email":"",` +
	`"uti":"","ver":"1.0","ver":"2.0","xms_tcdt":17,"xms_ftd":"","xms_idrel":"1 ","xms_st":{"sub":""},"login_hint":"","auth_time":17,"nonce":"","at_hash":"","sid":""}`

const maxInflated = 1 << 16 // a stored JWT part never comes near this

var (
	deflaters = sync.Pool{New: func() any {
		w, err := flate.NewWriterDict(nil, flate.BestCompression, []byte(jwtDictV1))
		if err != nil {
			panic(err)
		}
		return w
	}}
	inflaters = sync.Pool{New: func() any { return flate.NewReaderDict(nil, []byte(jwtDictV1)) }}
)

func deflateJSON(p []byte) []byte {
	var buf bytes.Buffer
	w := deflaters.Get().(*flate.Writer)
	w.Reset(&buf)
	w.Write(p)
	w.Close()
	deflaters.Put(w)
	return buf.Bytes()
}

func inflateJSON(p []byte) ([]byte, bool) {
	r := inflaters.Get().(io.ReadCloser)
	defer inflaters.Put(r)
	if err := r.(flate.Resetter).Reset(bytes.NewReader(p), []byte(jwtDictV1)); err != nil {
		return nil, false
	}
	var out bytes.Buffer
	out.Grow(3 * len(p))
	if _, err := out.ReadFrom(io.LimitReader(r, maxInflated+1)); err != nil || out.Len() > maxInflated {
		return nil, false
	}
	return out.Bytes(), true
}
